"""Tests for larp_jax.models.set_transformer: MAB vs a NumPy transcription of the official MAB,
masking, permutation equivariance/invariance."""

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from larp_jax.models import set_transformer as st


def _layer_norm(x, p, eps=1e-5):
  mean = x.mean(-1, keepdims=True)
  var = ((x - mean) ** 2).mean(-1, keepdims=True)
  return (x - mean) / np.sqrt(var + eps) * p['scale'] + p['bias']


def _numpy_mab(p, queries, keys, num_heads, layer_norm, key_mask=None):
  """The official MAB (juho-lee/set_transformer modules.py) written out in NumPy, float64."""
  lin = lambda x, name: x @ p[name]['kernel'] + p[name]['bias']
  q, k, v = lin(queries, 'query'), lin(keys, 'key'), lin(keys, 'value')
  dim = q.shape[-1]
  head = dim // num_heads
  outputs = []
  for h in range(num_heads):  # X.split(dim_V // heads, 2): contiguous chunks
    qh, kh, vh = (x[..., h * head : (h + 1) * head] for x in (q, k, v))
    logits = np.einsum('bqd,bkd->bqk', qh, kh) / np.sqrt(dim)  # sqrt of the FULL dim_V
    if key_mask is not None:
      logits = np.where(key_mask[:, None, :], logits, -np.inf)
    a = np.exp(logits - logits.max(-1, keepdims=True))
    a = a / a.sum(-1, keepdims=True)
    outputs.append(qh + a @ vh)  # residual on the projected queries
  o = np.concatenate(outputs, -1)
  if layer_norm:
    o = _layer_norm(o, p['ln0'])
  o = o + np.maximum(lin(o, 'row_ff'), 0)
  if layer_norm:
    o = _layer_norm(o, p['ln1'])
  return o


def _to_numpy(params):
  return jax.tree.map(lambda a: np.asarray(a, np.float64), nn.meta.unbox(params))


@pytest.mark.parametrize('layer_norm', [False, True])
def test_mab_matches_numpy_reference(layer_norm):
  rng = np.random.default_rng(0)
  queries = rng.normal(size=(3, 4, 6)).astype(np.float32)
  keys = rng.normal(size=(3, 7, 5)).astype(np.float32)
  key_mask = rng.random((3, 7)) < 0.7
  key_mask[:, 0] = True
  mab = st.MAB(dim=8, num_heads=4, layer_norm=layer_norm)
  variables = mab.init(jax.random.key(0), queries, keys, key_mask)
  params = _to_numpy(variables['params'])
  for mask in (None, key_mask):
    out = mab.apply(variables, queries, keys, mask)
    chex.assert_shape(out, (3, 4, 8))
    expected = _numpy_mab(
        params, queries.astype(np.float64), keys.astype(np.float64), 4, layer_norm, mask
    )
    np.testing.assert_allclose(out, expected, atol=2e-5, rtol=2e-5)


def test_mab_rejects_bad_heads_and_masks():
  x = jnp.ones((2, 3, 4))
  with pytest.raises(ValueError, match='divisible'):
    st.MAB(dim=6, num_heads=4).init(jax.random.key(0), x, x)
  with pytest.raises(ValueError, match='mask'):
    st.MAB(dim=4, num_heads=2).init(jax.random.key(0), x, x, jnp.ones((2, 3, 5), bool))


def _masked_inputs(seed, batch=2, num_items=7, width=5):
  rng = np.random.default_rng(seed)
  x = rng.normal(size=(batch, num_items, width)).astype(np.float32)
  mask = np.ones((batch, num_items), bool)
  mask[0, 4:] = False
  mask[1, [1, 5]] = False
  return x, mask


BLOCKS = {
    'sab': lambda: st.SAB(dim=8, num_heads=2, layer_norm=True),
    'isab': lambda: st.ISAB(dim=8, num_heads=2, num_inducing=3, layer_norm=True),
    'encoder': lambda: st.SetTransformerEncoder(dim=8, num_heads=2, num_inducing=3, num_layers=2),
}


@pytest.mark.parametrize('name', sorted(BLOCKS))
def test_blocks_are_permutation_equivariant_and_ignore_padding(name):
  block = BLOCKS[name]()
  x, mask = _masked_inputs(1)
  variables = block.init(jax.random.key(1), x, mask)
  out = np.asarray(block.apply(variables, x, mask))
  # Permuting items (padding included) permutes the outputs.
  perm = np.random.default_rng(2).permutation(x.shape[1])
  out_perm = np.asarray(block.apply(variables, x[:, perm], mask[:, perm]))
  np.testing.assert_allclose(out_perm, out[:, perm], atol=1e-5)
  # Padded items' features do not change real items' outputs.
  garbage = np.where(mask[..., None], x, 1e3).astype(np.float32)
  out_garbage = np.asarray(block.apply(variables, garbage, mask))
  np.testing.assert_allclose(out_garbage[mask], out[mask], atol=1e-5)
  # ... but they would without the mask (the test can fail).
  unmasked = np.asarray(block.apply(variables, garbage, None))
  assert np.abs(unmasked[mask] - out[mask]).max() > 1e-3


def test_pma_is_permutation_invariant_and_masked():
  pma = st.PMA(dim=5, num_heads=1, num_seeds=2)
  x, mask = _masked_inputs(3)
  variables = pma.init(jax.random.key(0), x, mask)
  out = pma.apply(variables, x, mask)
  chex.assert_shape(out, (2, 2, 5))
  perm = np.random.default_rng(4).permutation(x.shape[1])
  np.testing.assert_allclose(pma.apply(variables, x[:, perm], mask[:, perm]), out, atol=1e-5)
  garbage = np.where(mask[..., None], x, -50.0).astype(np.float32)
  np.testing.assert_allclose(pma.apply(variables, garbage, mask), out, atol=1e-5)


def test_all_padding_set_is_finite():
  isab = st.ISAB(dim=4, num_heads=2, num_inducing=2)
  x = jnp.ones((1, 3, 4))
  mask = jnp.zeros((1, 3), bool)
  variables = isab.init(jax.random.key(0), x, mask)
  assert np.isfinite(np.asarray(isab.apply(variables, x, mask))).all()


def test_kernels_carry_logical_axis_names():
  variables = BLOCKS['isab']().init(jax.random.key(0), *_masked_inputs(0))
  boxed = variables['params']['mab0']['query']['kernel']
  assert isinstance(boxed, nn.Partitioned)
  assert boxed.names == ('embed', 'mlp')


def _numpy_paper_mab(p, y, z, num_heads, key_mask=None):
  """MOSTRA Eq. 3-4 in NumPy, float64: LN(Y + [O_1 || ... || O_H] W^O),
  O_h = softmax(Y W_h^Q (Z W_h^K)^T / sqrt(d_h)) Z W_h^V."""
  lin = lambda x, name: x @ p[name]['kernel'] + p[name]['bias']
  q, k, v = lin(y, 'query'), lin(z, 'key'), lin(z, 'value')
  head = q.shape[-1] // num_heads
  outputs = []
  for h in range(num_heads):
    qh, kh, vh = (x[..., h * head : (h + 1) * head] for x in (q, k, v))
    logits = np.einsum('bqd,bkd->bqk', qh, kh) / np.sqrt(head)
    if key_mask is not None:
      logits = np.where(key_mask[:, None, :], logits, -np.inf)
    a = np.exp(logits - logits.max(-1, keepdims=True))
    outputs.append((a / a.sum(-1, keepdims=True)) @ vh)
  return _layer_norm(y + lin(np.concatenate(outputs, -1), 'output'), p['ln'])


def test_paper_eq3_block_matches_numpy_reference_and_stays_equivariant():
  rng = np.random.default_rng(1)
  y = rng.normal(size=(2, 5, 8)).astype(np.float32)
  z = rng.normal(size=(2, 6, 7)).astype(np.float32)
  key_mask = rng.random((2, 6)) < 0.7
  key_mask[:, 0] = True
  mab = st.MAB(dim=8, num_heads=2, block='paper')
  variables = mab.init(jax.random.key(0), y, z, key_mask)
  params = _to_numpy(variables['params'])
  assert set(params) == {'query', 'key', 'value', 'output', 'ln'}
  for mask in (None, key_mask):
    out = mab.apply(variables, y, z, mask)
    np.testing.assert_allclose(
        out,
        _numpy_paper_mab(params, y.astype(np.float64), z.astype(np.float64), 2, mask),
        atol=2e-5,
    )
  with pytest.raises(ValueError, match='project the inputs'):
    mab.apply(variables, z[:, :, :7], z, None)
  with pytest.raises(ValueError, match='block'):
    st.MAB(dim=8, num_heads=2, block='eq3').init(jax.random.key(0), y, y)
  # A SetTRM stack of Eq. 3 ISABs is permutation equivariant and ignores padded items.
  from larp_jax.models import mostra

  config = mostra.SetTRMConfig(
      num_layers=2, num_heads=2, num_inducing=3, hidden_dim=8, ff_dim=16, mab_block='paper'
  )
  encoder = mostra.SetTRMEncoder(config)
  x = rng.normal(size=(2, 6, 5)).astype(np.float32)
  mask = np.array([[1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 1]], bool)
  variables = encoder.init(jax.random.key(1), x, mask)
  out = np.asarray(encoder.apply(variables, x, mask))
  perm = rng.permutation(6)
  np.testing.assert_allclose(
      encoder.apply(variables, x[:, perm], mask[:, perm]), out[:, perm], atol=1e-5
  )
  x2 = x.copy()
  x2[0, 4:] = 100.0  # padded items
  np.testing.assert_allclose(encoder.apply(variables, x2, mask)[0, :4], out[0, :4], atol=1e-5)
