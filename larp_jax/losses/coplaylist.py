"""Table 2's CO-Playlist baseline (LARP Sec. 4.1.2, ref. [1]: Alonso-Jimenez et al., ICASSP'23):
the audio tower alone trained with NT-Xent (SimCLR) over co-occurring track pairs, as a pure loss.

The positives come from the training playlists only (`coplaylist_positives`); the contrast is
`infonce.multi_positive_contrastive` with the diagonal masked out of the softmax.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from larp_jax.losses import infonce

Array = jax.Array


COPLAYLIST_POSITIVES = ('pair', 'cooccurrence')


def coplaylist_positives(
    partner: Array, ids: Array, groups: Array | None = None, positives: str = 'pair'
) -> Array:
  """The positives of the CO-Playlist NT-Xent over the R clips of a batch.

  Row r is positive with column c (c != r) when
    'pair' (ref. [1]): c is r's sampled co-occurring partner (`partner[r]`), or c holds the same
      track (`ids[c] == ids[r]`: a track repeated in the batch is not its own negative);
    'cooccurrence': as 'pair', and also every c whose track shares a training playlist with r's
      (`groups`: O of Eq. 19 restricted to the batch, so no co-occurring track is a negative).
  The diagonal is never a positive (NT-Xent leaves it out of the softmax).

  Args:
    partner: int [R] batch row of each clip's co-occurring partner (the ego batch [A; B] of B
      pairs: [B..2B-1, 0..B-1]).
    ids: int [R] training-track index of each clip.
    groups: int [R, G] training-playlist ids of each clip's track (-1 padded); 'cooccurrence' only.
    positives: 'pair' or 'cooccurrence'.

  Returns:
    bool [R, R].
  """
  if positives not in COPLAYLIST_POSITIVES:
    raise ValueError(f'positives must be one of {COPLAYLIST_POSITIVES}, got {positives!r}.')
  ids = infonce.as_groups(ids, 'ids')
  r = ids.shape[0]
  partner = jnp.asarray(partner, jnp.int32)
  if partner.shape != (r,):
    raise ValueError(f'partner must have shape [{r}], got {partner.shape}.')
  out = infonce.pair_positives(partner, r) | infonce.shared_group_positives(ids, ids)
  if positives == 'cooccurrence':
    groups = infonce.as_groups(groups, "groups (positives='cooccurrence')", rows=r)
    out = out | infonce.shared_group_positives(groups, groups)
  return out & ~jnp.eye(r, dtype=bool)


def coplaylist_loss(
    audio: Array,
    temperature: float | Array,
    *,
    partner: Array,
    ids: Array,
    groups: Array | None = None,
    positives: str = 'pair',
) -> tuple[Array, dict[str, Array]]:
  """CO-Playlist's NT-Xent (SimCLR) over the audio features of a batch of co-occurring pairs.

    logits_rc = a_r . a_c / temperature                 (c != r; the diagonal is left out)
    loss      = mean_r -sum_c y_rc log softmax_c(logits_r),  y_r uniform over r's positives

  (`coplaylist_positives`). With one positive per row this is SimCLR's NT-Xent: every other clip
  of the batch is a negative. Keys are the online features (no momentum encoder, no queue).

  Args:
    audio: [R, D] L2-normalised online audio features (R = 2B clips, the ego batch).
    temperature: scalar > 0.
    partner, ids, groups, positives: as `coplaylist_positives`.

  Returns:
    (loss float32 scalar, aux of `infonce.multi_positive_contrastive`: 'logits', 'targets',
    'per_row_loss', 'row_valid', 'top1_is_positive').
  """
  audio = jnp.asarray(audio)
  if audio.ndim != 2:
    raise ValueError(f'audio must be [R, D], got {audio.shape}.')
  pos = coplaylist_positives(partner, ids, groups, positives)
  not_self = ~jnp.eye(audio.shape[0], dtype=bool)
  return infonce.multi_positive_contrastive(
      audio, audio, None, pos, temperature, logit_mask=not_self
  )
