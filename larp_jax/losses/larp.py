"""LARP's contrastive objectives WTC, TTC and TPC, and the stage combination, as pure functions.

All three LARP losses are one form, the multi-positive InfoNCE of `larp_jax.losses.infonce`
(`infonce.multi_positive_contrastive`): online query features against key features (the current
batch, optionally followed by a FIFO queue of momentum features), with cross-entropy against a
target distribution spread uniformly over each row's positives (BLIP-retrieval style
`pos / pos.sum(1)`), optionally mixed with momentum-distillation soft targets:

    logits  = query @ [keys ; queue]^T / temperature                       [B, B+Q]   float32
    targets = (1 - alpha) * positives / positives.sum(-1)
              + alpha * softmax(query_m @ [keys_m ; queue]^T / t)
    loss_b  = -sum_j targets[b, j] * log_softmax(logits)[b, j]

Paper mapping (LARP, KDD'24, App. A):
  * `wtc_loss`   Eq. 1-3 / 13-15: audio-text of the same track; positives = the track itself (plus
                 any batch/queue entry with the same track id when `ids`/`queue_ids` are given).
  * `ttc_loss`   Eq. 4 / 16-19: audio of track i against text of a co-occurring track j and vice
                 versa; positives from the co-occurrence graph O (tracks sharing a training
                 playlist), in the batch and, when a group queue is kept, in the queue.
                 `positives='pair'` is the official code (only the sampled partner is positive).
  * `tpc_loss`   Eq. 5 / 20-25: fused playlist vectors against track features; positives from the
                 incidence R (track in playlist). `positives='pair'`,
                 `directions='track_to_playlist'`, `normalize_playlists=False`,
                 `mean_over_all_rows=True` reproduce the official code.
  * `stage_loss` Eq. 7-9: stage 1 = WTC, 2 = WTC + TTC, 3 = WTC + TTC + TPC.

Table 2's CO-Playlist baseline (the audio tower alone, NT-Xent over co-occurring track pairs) has
its own loss file, `larp_jax/losses/coplaylist.py`.

Relation "groups" (see `infonce.shared_group_positives`): for identity positives the id list is
the track id ([B] or [B, 1]); for co-occurrence (O) and incidence (R) it is the list of
training-playlist ids a track belongs to ([B, G], truncated to G by the data pipeline). A queue of
such lists (`queue_groups [Q, G]`, or `queue_ids [Q]`) plays the role of BLIP retrieval's
`idx_queue`, so a queued copy of the same/co-occurring track is not treated as a negative.

The momentum queues, lookup tables and EMA these losses are fed from are train state and live in
`larp_jax.training.memory`.

Every loss returns `(loss, aux)`: `loss` a float32 scalar and `aux` a dict of float32 diagnostics
(per-direction losses, logits, targets, row masks). Features are expected L2-normalised (cosine
similarity, as in the paper); they are cast to float32 before any similarity is formed.
"""

from __future__ import annotations

from collections.abc import Mapping

import jax
import jax.numpy as jnp

from larp_jax.losses import infonce
from larp_jax.models import layers

Array = jax.Array


# --------------------------------------------------------------------------------------------------
# WTC and TTC: cross-modal contrast between audio and text of (paired) tracks.
# --------------------------------------------------------------------------------------------------


def _check_features(name_to_array: Mapping[str, Array | None], rows: int, dim: int) -> None:
  for name, x in name_to_array.items():
    if x is not None and tuple(x.shape) != (rows, dim):
      raise ValueError(f'{name} must have shape [{rows}, {dim}], got {tuple(x.shape)}.')


def _check_queue(queue_audio: Array | None, queue_text: Array | None, dim: int) -> int:
  if (queue_audio is None) != (queue_text is None):
    raise ValueError('queue_audio and queue_text must both be given or both be None.')
  if queue_audio is None:
    return 0
  if queue_audio.ndim != 2 or queue_audio.shape[1] != dim or queue_text.shape != queue_audio.shape:
    raise ValueError(
        f'queue_audio/queue_text must both be [Q, {dim}], got {queue_audio.shape} and '
        f'{queue_text.shape}.'
    )
  return queue_audio.shape[0]


def _use_distillation(alpha: float | Array) -> bool:
  return not (isinstance(alpha, (int, float)) and float(alpha) == 0.0)


def _audio_text_contrast(
    audio,
    text,
    audio_m,
    text_m,
    queue_audio,
    queue_text,
    temperature,
    partner,
    pos_a2t,
    pos_t2a,
    alpha,
):
  """Shared body of WTC/TTC. Pair b is (audio[b], text[partner[b]]).

  a2t rows: query audio[b], keys [text_m ; queue_text], positives pos_a2t[b].
  t2a rows: query text[partner[b]], keys [audio_m ; queue_audio], positives pos_t2a[b].
  """
  text_query = jnp.take(text, partner, axis=0)
  soft_a2t = soft_t2a = None
  if _use_distillation(alpha):
    soft_a2t = infonce.momentum_distillation_targets(audio_m, text_m, queue_text, temperature)
    soft_t2a = infonce.momentum_distillation_targets(
        jnp.take(text_m, partner, axis=0), audio_m, queue_audio, temperature
    )
  loss_a2t, aux_a2t = infonce.multi_positive_contrastive(
      audio, text_m, queue_text, pos_a2t, temperature, soft_a2t, alpha
  )
  loss_t2a, aux_t2a = infonce.multi_positive_contrastive(
      text_query, audio_m, queue_audio, pos_t2a, temperature, soft_t2a, alpha
  )
  loss = 0.5 * (loss_a2t + loss_t2a)
  aux = {
      'loss_a2t': loss_a2t,
      'loss_t2a': loss_t2a,
      'logits_a2t': aux_a2t['logits'],
      'logits_t2a': aux_t2a['logits'],
      'targets_a2t': aux_a2t['targets'],
      'targets_t2a': aux_t2a['targets'],
      'top1_a2t': aux_a2t['top1_is_positive'],
      'top1_t2a': aux_t2a['top1_is_positive'],
  }
  return loss, aux


def _prepare_audio_text(audio, text, audio_m, text_m, queue_audio, queue_text, alpha):
  """Shared argument checks of wtc_loss/ttc_loss; missing momentum keys default to the online ones.

  Returns:
    (audio, audio_m, text_m, batch size B, queue size Q).
  """
  audio = jnp.asarray(audio)
  b, d = audio.shape
  audio_m = audio if audio_m is None else audio_m
  text_m = text if text_m is None else text_m
  _check_features({'text': text, 'audio_m': audio_m, 'text_m': text_m}, b, d)
  q = _check_queue(queue_audio, queue_text, d)
  if _use_distillation(alpha) and (audio_m is audio or text_m is text):
    raise ValueError('alpha > 0 (momentum distillation) needs audio_m and text_m.')
  return audio, audio_m, text_m, b, q


def wtc_loss(
    audio: Array,
    text: Array,
    audio_m: Array | None,
    text_m: Array | None,
    queue_audio: Array | None,
    queue_text: Array | None,
    temperature: float | Array,
    *,
    ids: Array | None = None,
    queue_ids: Array | None = None,
    alpha: float | Array = 0.0,
) -> tuple[Array, dict[str, Array]]:
  """Within-Track Contrastive loss (Eq. 1-3): audio and caption of the same track.

  `0.5 * [CE_a2t + CE_t2a]` averaged over the batch, where a2t scores audio[b] against the momentum
  text features of the batch followed by the text queue, and t2a the reverse.

  Args:
    audio, text: [B, D] online (L2-normalised) features; row b of both is track b.
    audio_m, text_m: [B, D] momentum-encoder features used as keys (BLIP). None uses the online
      features as keys (CLIP-style, gradients flow into them).
    queue_audio, queue_text: [Q, D] queued momentum features (negatives), or both None.
    temperature: scalar > 0.
    ids: optional int [B] track ids. When given, every batch/queue entry with the same id is a
      positive (BLIP retrieval's idx targets); when None only the diagonal is (paper / official
      code).
    queue_ids: optional int [Q] track ids of the queue entries (-1 = unknown, never positive). Only
      used together with `ids`.
    alpha: momentum-distillation weight (official code ramps 0 -> 0.4 over two epochs); 0 disables.
      Needs `audio_m`/`text_m`.

  Returns:
    (loss float32 scalar, aux dict with 'loss_a2t', 'loss_t2a', logits/targets per direction and
    top-1 accuracies).
  """
  audio, audio_m, text_m, b, q = _prepare_audio_text(
      audio, text, audio_m, text_m, queue_audio, queue_text, alpha
  )

  partner = jnp.arange(b, dtype=jnp.int32)
  positives = infonce.pair_positives(partner, b + q)
  if ids is not None:
    ids = infonce.as_groups(ids, 'ids')
    if ids.shape[0] != b:
      raise ValueError(f'ids must have B = {b} rows, got {ids.shape}.')
    key_ids = ids
    if q:
      if queue_ids is None:
        queue_ids = -jnp.ones((q,), jnp.int32)
      queue_ids = infonce.as_groups(queue_ids, 'queue_ids')
      if queue_ids.shape[0] != q:
        raise ValueError(f'queue_ids must have Q = {q} rows, got {queue_ids.shape}.')
      width = max(ids.shape[1], queue_ids.shape[1])
      key_ids = jnp.concatenate([_pad_groups(ids, width), _pad_groups(queue_ids, width)], axis=0)
    positives = positives | infonce.shared_group_positives(ids, key_ids)
  elif queue_ids is not None:
    raise ValueError('queue_ids needs ids (the batch track ids) too.')
  return _audio_text_contrast(
      audio,
      text,
      audio_m,
      text_m,
      queue_audio,
      queue_text,
      temperature,
      partner,
      positives,
      positives,
      alpha,
  )


def _pad_groups(groups: Array, width: int) -> Array:
  """int32 [R, G] -> [R, width] (width >= G), padded on the right with -1."""
  if groups.shape[1] == width:
    return groups
  return jnp.pad(groups, ((0, 0), (0, width - groups.shape[1])), constant_values=-1)


_TTC_POSITIVES = ('cooccurrence', 'pair')


def ttc_loss(
    audio: Array,
    text: Array,
    audio_m: Array | None,
    text_m: Array | None,
    queue_audio: Array | None,
    queue_text: Array | None,
    temperature: float | Array,
    *,
    partner: Array,
    groups: Array | None = None,
    queue_groups: Array | None = None,
    positives: str = 'cooccurrence',
    alpha: float | Array = 0.0,
) -> tuple[Array, dict[str, Array]]:
  """Track-Track Contrastive loss (Eq. 4, 16-19) over pairs of co-occurring tracks.

  Features are per track (the "ego" layout: row b holds track b's audio and caption). `partner[b]`
  is the batch row of a track that shares a playlist with track b; the cross pairs are
  (audio[b], text[partner[b]]). With the official batch [A_1..A_n, B_1..B_n] and
  partner = [n..2n-1, 0..n-1] the pairs are exactly the official cross batch, and both terms of
  Eq. 16 (Contrast(a_i, t_j) and Contrast(t_i, a_j)) are covered. For a batch that already holds the
  cross pairs row-aligned, pass partner = arange(B) with positives='pair'.

  Directions (Eq. 17-18): a2t queries audio[b] against [text_m ; queue_text], positive at least
  text_m[partner[b]]; t2a queries text[partner[b]] against [audio_m ; queue_audio], positive at
  least audio_m[b]. Loss = 0.5 * (mean CE_a2t + mean CE_t2a).

  Positives (Eq. 19):
    'cooccurrence' (paper): additionally every key whose track co-occurs with the query's track
      (shares an id in `groups`, i.e. O restricted to the batch; a track co-occurs with itself), and
      every queue entry whose `queue_groups` share an id with the query's track.
    'pair' (official code): only the sampled partner; the queue is all negatives.

  Args:
    audio, text: [B, D] online features per track.
    audio_m, text_m: [B, D] momentum features per track (keys); None = online features.
    queue_audio, queue_text: [Q, D] or None.
    temperature: scalar > 0.
    partner: int [B], index in [0, B) of each track's co-occurring partner row.
    groups: int [B, G] (-1 padded) training-playlist ids per track; required for 'cooccurrence'.
    queue_groups: int [Q, G'] playlist ids of the queued tracks (-1 padded / unknown), or None
      (queue entries are then negatives).
    positives: 'cooccurrence' or 'pair'.
    alpha: momentum-distillation weight (needs audio_m/text_m); 0 disables.

  Returns:
    (loss float32 scalar, aux dict as for `wtc_loss`).
  """
  if positives not in _TTC_POSITIVES:
    raise ValueError(f'positives must be one of {_TTC_POSITIVES}, got {positives!r}.')
  audio, audio_m, text_m, b, q = _prepare_audio_text(
      audio, text, audio_m, text_m, queue_audio, queue_text, alpha
  )
  partner = jnp.asarray(partner)
  if partner.shape != (b,) or not jnp.issubdtype(partner.dtype, jnp.integer):
    raise ValueError(
        f'partner must be an int array of shape [{b}], got {partner.shape} ' f'{partner.dtype}.'
    )
  partner = partner.astype(jnp.int32)

  # a2t row b: keys are texts of tracks l (column l) -> positive at l == partner[b].
  pos_a2t = infonce.pair_positives(partner, b + q)
  # t2a row b (query text[partner[b]]): keys are audios of tracks l -> positive at l == b.
  pos_t2a = infonce.pair_positives(jnp.arange(b, dtype=jnp.int32), b + q)
  if positives == 'cooccurrence':
    groups = infonce.as_groups(groups, "groups (positives='cooccurrence')", rows=b)
    key_groups = groups
    if q:
      if queue_groups is None:
        queue_groups = -jnp.ones((q, 1), jnp.int32)
      queue_groups = infonce.as_groups(queue_groups, 'queue_groups', rows=q)
      width = max(groups.shape[1], queue_groups.shape[1])
      key_groups = jnp.concatenate(
          [_pad_groups(groups, width), _pad_groups(queue_groups, width)], 0
      )
    pos_a2t = pos_a2t | infonce.shared_group_positives(groups, key_groups)
    pos_t2a = pos_t2a | infonce.shared_group_positives(
        jnp.take(groups, partner, axis=0), key_groups
    )
  return _audio_text_contrast(
      audio,
      text,
      audio_m,
      text_m,
      queue_audio,
      queue_text,
      temperature,
      partner,
      pos_a2t,
      pos_t2a,
      alpha,
  )


# --------------------------------------------------------------------------------------------------
# TPC: track against fused playlist vectors.
# --------------------------------------------------------------------------------------------------

_TPC_POSITIVES = ('incidence', 'pair')
_TPC_DIRECTIONS = ('both', 'track_to_playlist')


def tpc_loss(
    track_audio: Array,
    track_text: Array,
    playlist_audio: Array,
    playlist_text: Array,
    temperature: float | Array,
    *,
    parent: Array,
    track_groups: Array | None = None,
    playlist_ids: Array | None = None,
    queue_audio: Array | None = None,
    queue_text: Array | None = None,
    queue_groups: Array | None = None,
    positives: str = 'incidence',
    directions: str = 'both',
    normalize_playlists: bool = True,
    mean_over_all_rows: bool = False,
) -> tuple[Array, dict[str, Array]]:
  """Track-Playlist Contrastive loss (Eq. 5, 20-25).

  TPC = 0.5 * [Contrast(a_p, t_s) + Contrast(t_p, a_s)] with each Contrast the mean of its two CE
  directions (Eq. 21-22), i.e. the mean of four terms:
    p2s_audio: playlist audio vector -> track texts   (keys [track_text ; queue_text])
    s2p_text:  track text -> playlist audio vectors   (keys playlist_audio)
    p2s_text:  playlist text vector -> track audios   (keys [track_audio ; queue_audio])
    s2p_audio: track audio -> playlist text vectors   (keys playlist_text)
  `directions='track_to_playlist'` keeps only the two s2p terms (official code).

  Positives (Eq. 25): 'incidence' (paper) marks (playlist k, track i) when track i is in playlist k
  (R restricted to the batch: `playlist_ids[k]` is in `track_groups[i]`) and always the sampled pair
  (parent[i] == k); queue entries are positives when `queue_groups` contain the playlist id.
  'pair' (official): only parent[i] == k; the queue is all negatives.

  Args:
    track_audio, track_text: [B, D] online features of the anchor tracks s_i.
    playlist_audio, playlist_text: [P, D] fused playlist vectors (`FusionSelfAttention` over the
      lookup-table features of J = p_k minus s_i), float32.
    temperature: scalar > 0.
    parent: int [B], index in [0, P) of the playlist sampled with track i, or -1 (no parent: the row
      has no 'pair' positive).
    track_groups: int [B, G] (-1 padded) training-playlist ids of each track ('incidence' only).
    playlist_ids: int [P] ids of the batch playlists ('incidence' only).
    queue_audio, queue_text: optional [Q, D] queued momentum track features, appended as extra
      track keys in the playlist-to-track directions (unused with 'track_to_playlist').
    queue_groups: optional int [Q, G'] playlist ids of queued tracks ('incidence' only).
    positives: 'incidence' or 'pair'.
    directions: 'both' (paper) or 'track_to_playlist' (official).
    normalize_playlists: L2-normalise the playlist vectors so sim() is a cosine (paper). The
      official code uses the raw fusion output (False).
    mean_over_all_rows: average track rows over all B rows even when a row has no positive (official
      quirk; its rows B..2B-1 have no positive). Playlist rows always average over valid rows.

  Returns:
    (loss float32 scalar, aux dict with one loss per enabled direction and their logits/targets).
  """
  if positives not in _TPC_POSITIVES:
    raise ValueError(f'positives must be one of {_TPC_POSITIVES}, got {positives!r}.')
  if directions not in _TPC_DIRECTIONS:
    raise ValueError(f'directions must be one of {_TPC_DIRECTIONS}, got {directions!r}.')
  track_audio = jnp.asarray(track_audio)
  b, d = track_audio.shape
  _check_features({'track_text': track_text}, b, d)
  p = playlist_audio.shape[0]
  _check_features({'playlist_audio': playlist_audio, 'playlist_text': playlist_text}, p, d)
  q = _check_queue(queue_audio, queue_text, d)
  parent = jnp.asarray(parent)
  if parent.shape != (b,) or not jnp.issubdtype(parent.dtype, jnp.integer):
    raise ValueError(
        f'parent must be an int array of shape [{b}], got {parent.shape} ' f'{parent.dtype}.'
    )
  parent = parent.astype(jnp.int32)

  # incidence[i, k] (track i, playlist k).
  incidence = infonce.pair_positives(parent, p)
  queue_incidence = jnp.zeros((p, q), bool)
  if positives == 'incidence':
    if track_groups is None or playlist_ids is None:
      raise ValueError("positives='incidence' needs track_groups [B, G] and playlist_ids [P].")
    track_groups = infonce.as_groups(track_groups, 'track_groups')
    playlist_ids = infonce.as_groups(playlist_ids, 'playlist_ids')
    if track_groups.shape[0] != b or playlist_ids.shape[0] != p:
      raise ValueError(
          f'track_groups needs {b} rows and playlist_ids {p}; got '
          f'{track_groups.shape}, {playlist_ids.shape}.'
      )
    incidence = incidence | infonce.shared_group_positives(track_groups, playlist_ids)
    if q and queue_groups is not None:
      queue_groups = infonce.as_groups(queue_groups, 'queue_groups', rows=q)
      queue_incidence = infonce.shared_group_positives(playlist_ids, queue_groups)

  if normalize_playlists:
    playlist_audio = layers.l2_normalize(playlist_audio)
    playlist_text = layers.l2_normalize(playlist_text)

  terms = {}
  aux = {}
  # Track -> playlist (the official directions).
  terms['s2p_audio'], a = infonce.multi_positive_contrastive(
      track_audio,
      playlist_text,
      None,
      incidence,
      temperature,
      mean_over_all_rows=mean_over_all_rows,
  )
  aux['logits_s2p_audio'], aux['targets_s2p_audio'] = a['logits'], a['targets']
  terms['s2p_text'], a = infonce.multi_positive_contrastive(
      track_text,
      playlist_audio,
      None,
      incidence,
      temperature,
      mean_over_all_rows=mean_over_all_rows,
  )
  aux['logits_s2p_text'], aux['targets_s2p_text'] = a['logits'], a['targets']
  if directions == 'both':
    pos_p2s = jnp.concatenate([incidence.T, queue_incidence], axis=1)
    terms['p2s_audio'], a = infonce.multi_positive_contrastive(
        playlist_audio, track_text, queue_text, pos_p2s, temperature
    )
    aux['logits_p2s_audio'], aux['targets_p2s_audio'] = a['logits'], a['targets']
    terms['p2s_text'], a = infonce.multi_positive_contrastive(
        playlist_text, track_audio, queue_audio, pos_p2s, temperature
    )
    aux['logits_p2s_text'], aux['targets_p2s_text'] = a['logits'], a['targets']
  loss = sum(terms.values()) / len(terms)
  aux.update({f'loss_{k}': v for k, v in terms.items()})
  return loss, aux


# --------------------------------------------------------------------------------------------------
# Stages (Eq. 7-9).
# --------------------------------------------------------------------------------------------------

STAGE_TERMS = {1: ('wtc',), 2: ('wtc', 'ttc'), 3: ('wtc', 'ttc', 'tpc')}


def stage_loss(
    stage: int,
    losses: Mapping[str, Array],
    *,
    reduction: str = 'sum',
    weights: Mapping[str, float] | None = None,
) -> tuple[Array, dict[str, Array]]:
  """Combines the per-loss scalars for a training stage (Eq. 7-9).

  Args:
    stage: 1 (WTC), 2 (WTC + TTC) or 3 (WTC + TTC + TPC).
    losses: mapping with at least the keys the stage needs ('wtc', 'ttc', 'tpc'); extra keys are
      ignored.
    reduction: 'sum' (Eq. 7-9 and the official code, which back-propagates each term) or 'mean'
      (the "simple average" the paper's text mentions).
    weights: optional per-term multipliers (default 1).

  Returns:
    (total float32 scalar, {'loss/<term>': scalar for each used term, 'loss/total': total}).
  """
  if stage not in STAGE_TERMS:
    raise ValueError(f'stage must be 1, 2 or 3, got {stage!r}.')
  if reduction not in ('sum', 'mean'):
    raise ValueError(f"reduction must be 'sum' or 'mean', got {reduction!r}.")
  names = STAGE_TERMS[stage]
  missing = [n for n in names if n not in losses]
  if missing:
    raise ValueError(f'stage {stage} needs losses {names}; missing {missing}.')
  weights = weights or {}
  metrics = {}
  total = jnp.float32(0.0)
  for name in names:
    value = jnp.asarray(losses[name], jnp.float32)
    metrics[f'loss/{name}'] = value
    total = total + jnp.float32(weights.get(name, 1.0)) * value
  if reduction == 'mean':
    total = total / len(names)
  metrics['loss/total'] = total
  return total, metrics
