"""The main job (``experiments/demo.py``, ``larp_jax/jobs/chain_job.py``): LARP -> user
representation -> MAP-2T, MOSTRA beside; which variant of each system runs and what the chain
changes in it.

Variants (``--config=configs/chain.py:<variant>``; any key overridable, e.g.
``--config.overrides.user_rep.runs="('ae','ae_without_static')"``):
  demo  every system's ``demo`` variant; within the main job's time budget the user
        representation skips its Table 3 ablation runs and MAP-2T its extra fusion seeds (both
        still run by their own launchers)
  test  every system's ``test`` variant (tests/test_chain_job.py)
"""

import ml_collections

from configs import common


def _base(variant: str) -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.variant = variant  # the variant of each configs/<system>.py
  c.systems = ("larp", "user_rep", "map2t", "mostra")  # systems to run now
  c.beside = ("mostra",)  # run in a second process alongside the chain; () = in sequence
  # LARP track space the user representation averages: 'fused' (Eq. 11, what LARP's cold-start
  # retrieval uses for a track) | 'audio' | 'text'.
  c.audio_array = "fused"
  # MAP-2T's T: 'own' (its split.window_days = 30 before the last audiobook listen; the user
  # representation exports a second z batch at that T) | 'user_rep' (z's own T; on the demo the
  # data end 7 days later, so MAP-2T's test window and cohort shrink about 4x).
  c.map2t_cut_time = "own"
  c.overrides = ml_collections.ConfigDict()  # per system: keys merged into its config
  for system in ("larp", "user_rep", "map2t", "mostra"):
    c.overrides[system] = ml_collections.ConfigDict()
  return c


def _demo() -> ml_collections.ConfigDict:
  c = _base("demo")
  c.overrides.user_rep.runs = ("ae",)
  c.overrides.map2t.fusion_seeds = ()
  return c


def _test() -> ml_collections.ConfigDict:
  c = _base("test")
  c.overrides.larp.runs = ("stage1",)  # the final row present (LARP-WTC) is exported
  # ItemKNN only: train/valid/test are embedded (the catalogue export), nothing else is trained.
  c.overrides.larp.recommenders = ml_collections.ConfigDict(
      {"frameworks": ("itemknn",), "encoders": ()}
  )
  return c


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  return common.select_variant(arg, {"demo": _demo, "test": _test}, "configs/chain.py", "demo")
