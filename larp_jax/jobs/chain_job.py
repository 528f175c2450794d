"""The main job: the four systems as one chain on one workdir (README's first command).

    LARP (000)  ->  user representation (001)  ->  MAP-2T (002);   MOSTRA (003) beside them

Each system is its own job (``<system>_job.train_and_evaluate``) in ``WORKDIR/<system>``; this
module only wires one system's outputs into the next one's config and reports:

  larp      trains WTC -> TTC -> TPC (+ fusion), Tables 3 and 2; exports the final model's
            catalogue (``larp/export/catalogue_embeddings.npz``: every track of every split)
  user_rep  its listening logs are over the LARP catalogue's tracks; its audio space is LARP's
            exported ``audio`` array (``modality.audio_npz``) instead of the demo's stand-in;
            exports z (``user_rep/export/user_rep.npz``)
  map2t     the same users (``data.listening`` = the user-rep demo's generator settings); its music
            input is z (``inputs.music = 'user_rep'``), checked against z's manifest cut time.
            ``chain.map2t_cut_time='own'``: MAP-2T keeps its own T (``split.window_days`` before
            the last audiobook listen) and the user representation exports a second z batch at
            that T (``user_rep_job.export_batch``: spaces, features and autoencoder refitted on
            pre-T data); ``'user_rep'``: z as exported, T = z's cut time (the window is then the
            user representation's ``future_days``)
  mostra    its own demo session logs (the paper's data is separate)

Progress: one line per system as it starts (elapsed, expected duration, chain ETA from
``EXPECTED_SECONDS`` or the previous run's ``chain_timings.json``), each job's own progress bars
inside. Re-running with the same workdir resumes every system (finished runs re-evaluate only).
``WORKDIR/results.json`` holds each system's seconds and every demo claim's outcome.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import sys
import time
from typing import Any, Callable

import numpy as np

SYSTEMS = ("larp", "user_rep", "map2t", "mostra")
REPORT_STARTS = ("Table 1",)  # where a log's printed report begins (MOSTRA's Table 1)

# Seconds each system took in the main job on the reference 2-core machine (fresh clone, idle at the
# start, 2026-12-06: 783 s and 720 s in all; MOSTRA's are its own process's, beside the chain and
# sharing its two cores); the ETA uses WORKDIR/chain_timings.json (the previous run's) if present.
EXPECTED_SECONDS = {"larp": 510.0, "user_rep": 120.0, "map2t": 150.0, "mostra": 330.0}

LARP_STAGES = ("LARP-WTC", "LARP-TTC", "LARP-TPC w/o fusion", "LARP-TPC-fusion")  # Table 3 order
LARP_BASELINES = ("text-only BERT", "audio-only HTS-AT", "Random")
LARP_FRAMEWORKS = ("itemknn", "dropoutnet", "clcrec")  # Table 2 blocks (results '<fw>/<row>/...')


MAP2T_CUT_TIMES = ("own", "user_rep")


def wire(
    configs: dict[str, Any],
    workdir: str,
    audio_array: str = "fused",
    map2t_cut_time: str = "own",
) -> dict[str, Any]:
  """Points each downstream config at its upstream outputs in ``workdir`` (configs edited in place
  and returned): user_rep's audio space <- LARP's catalogue export; MAP-2T's users <- the user-rep
  demo's generator settings, its music input <- z (``map2t_cut_time``: module docstring; with
  'own' ``run_chain`` points ``inputs.user_rep_npz`` at the z batch it exports before MAP-2T)."""
  if map2t_cut_time not in MAP2T_CUT_TIMES:
    raise ValueError(f"chain.map2t_cut_time={map2t_cut_time!r}; expected one of {MAP2T_CUT_TIMES}.")
  missing = [s for s in SYSTEMS if s not in configs]
  if missing:
    raise ValueError(f"configs lacks {missing}; the chain runs {SYSTEMS}.")
  user_rep, map2t = configs["user_rep"], configs["map2t"]
  if user_rep.data.manual_dir or map2t.data.manual_dir:
    raise ValueError(
        "the chain wires the demo systems together; give real data to each system's own "
        "launcher (experiments/train_<system>.py) instead of user_rep/map2t data.manual_dir."
    )
  with user_rep.unlocked():
    user_rep.data.catalogue = configs["larp"].data.demo.to_dict()  # users play LARP's tracks
    user_rep.modality.audio_npz = larp_catalogue_export(workdir)
    user_rep.modality.audio_array = audio_array
  with map2t.unlocked():
    map2t.data.listening = user_rep.data.demo.to_dict()
    map2t.split.cut_time = "user_rep"  # T = the cut time of the z it reads
    if map2t_cut_time == "user_rep":  # the demo's data end future_days after z's T
      map2t.split.window_days = float(user_rep.split.future_days)
    map2t.inputs.music = "user_rep"
    map2t.inputs.user_rep_npz = os.path.join(workdir, "user_rep", "export", "user_rep.npz")
  return configs


def export_z_at_map2t_cut_time(configs: dict[str, Any], workdir: str) -> str:
  """Exports z at MAP-2T's own T (``map2t_job.auto_cut_time``) as a new user-rep batch and points
  ``configs['map2t'].inputs.user_rep_npz`` at it; returns the export's path."""
  # pylint: disable=g-import-not-at-top
  from larp_jax.jobs import map2t_job, user_rep_job

  t = map2t_job.auto_cut_time(configs["map2t"], os.path.join(workdir, "map2t"))
  path = user_rep_job.export_batch(configs["user_rep"], os.path.join(workdir, "user_rep"), t)
  with configs["map2t"].unlocked():
    configs["map2t"].inputs.user_rep_npz = path
  return path


def larp_catalogue_export(workdir: str) -> str:
  return os.path.join(workdir, "larp", "export", "catalogue_embeddings.npz")


def claims(results: dict[str, dict[str, Any]]) -> dict[str, bool]:
  """Every demo claim of the chain, as ``{claim: holds}`` from each system's results dict.

  larp:     the last trained stage (the demo: LARP-TPC-fusion) beats text-only, audio-only and
            random on recall@10 and ndcg@10 (Table 3, ItemKNN; and in Table 2 under every
            framework the job trained);
  user_rep: z's 7-day-ahead AUC is above average embeddings' (the point estimate; its
            bootstrap interval is printed by the user-rep report);
  map2t:    MAP-2T (full) beats ColloPop-Artist and Popularity on P@3, all test users;
  mostra:   the headline claim over one scorer (``mostra_report.claim_check``).
  """
  out: dict[str, bool] = {}
  larp = results.get("larp", {})
  trained = [name for name in LARP_STAGES if f"{name}/recall@10" in larp]
  for base in LARP_BASELINES if trained else ():
    for metric in ("recall@10", "ndcg@10"):
      ours, theirs = larp[f"{trained[-1]}/{metric}"], larp.get(f"{base}/{metric}")
      if theirs is not None:
        out[f"larp/{trained[-1]}>{base}/{metric}"] = bool(ours > theirs)
  for framework in LARP_FRAMEWORKS if trained else ():  # Table 2: every framework
    for base in LARP_BASELINES:
      for metric in ("recall@10", "ndcg@10"):
        ours = larp.get(f"{framework}/{trained[-1]}/{metric}")
        theirs = larp.get(f"{framework}/{base}/{metric}")
        if ours is not None and theirs is not None:
          out[f"larp/{framework}/{trained[-1]}>{base}/{metric}"] = bool(ours > theirs)
  diff = results.get("user_rep", {}).get("future_7d/user_rep_vs_avg_embeddings/auc_diff")
  if diff is not None:
    out["user_rep/z>avg_embeddings/future_7d_auc"] = bool(diff > 0)
  map2t = results.get("map2t", {})
  full = map2t.get("all/map2t_full/precision@3")
  for base in ("collopop_artist", "popularity"):
    theirs = map2t.get(f"all/{base}/precision@3")
    if full is not None and theirs is not None:
      out[f"map2t/map2t_full>{base}/precision@3"] = bool(full > theirs)
  if "claim/holds" in results.get("mostra", {}):
    out["mostra/claim_over_one_scorer"] = bool(results["mostra"]["claim/holds"])
  return out


def _flat(report: Any) -> dict[str, Any]:
  """A job's return value as its flat results dict (LARP returns {'results': ..., ...})."""
  if isinstance(report, dict) and isinstance(report.get("results"), dict):
    return report["results"]
  return dict(report or {})


def _expected(workdir: str) -> dict[str, float]:
  path = os.path.join(workdir, "chain_timings.json")
  expected = dict(EXPECTED_SECONDS)
  if os.path.exists(path):
    with open(path) as f:
      expected.update({k: float(v) for k, v in json.load(f).items() if k in expected})
  return expected


def _minutes(seconds: float) -> str:
  return f"{int(seconds) // 60}m{int(seconds) % 60:02d}s"


def run_chain(
    chain: Any,
    configs: dict[str, Any],
    workdir: str,
    jobs: dict[str, Callable[[Any, str], Any]] | None = None,
) -> dict[str, Any]:
  """Runs ``chain.systems`` with ``wire``d configs; returns and writes the summary.

  Args:
    chain: ``configs/chain.py``: ``systems`` to run now (the others' results are read from their
      ``results.json`` when present, e.g. ('larp',) trains only LARP); ``beside``: systems
      independent of the chain (MOSTRA) run in a second process while the chain runs, their
      output in ``workdir/<system>/log.txt``, their table printed at the end (() = in sequence);
      ``overrides``: per system, keys merged into its config; ``audio_array``: see ``wire``.
    configs: {system: its ml_collections config (``chain.variant``)}, every system of
      ``SYSTEMS``; edited in place.
    workdir: the chain's directory; system s runs in ``workdir/s``.
    jobs: {system: train_and_evaluate(config, workdir)}; default the four jobs. Module-level
      functions (the ``beside`` ones are pickled to a new process).

  Returns:
    {'seconds': {system: s}, 'claims': {claim: bool}, 'results': {system: flat results}}.
  """
  systems, beside = tuple(chain.systems), tuple(chain.beside)
  unknown = [s for s in systems + beside + tuple(chain.overrides) if s not in SYSTEMS]
  if unknown:
    raise ValueError(f"unknown systems {unknown} in the chain config; the chain is {SYSTEMS}.")
  jobs = jobs or _default_jobs()
  for system, overrides in chain.overrides.items():
    configs[system].update(overrides)
  wire(configs, workdir, chain.audio_array, chain.map2t_cut_time)
  os.makedirs(workdir, exist_ok=True)
  expected = _expected(workdir)
  start = time.perf_counter()
  seconds: dict[str, float] = {}
  results: dict[str, dict[str, Any]] = {}
  side = [s for s in SYSTEMS if s in systems and s in beside]
  todo = [s for s in SYSTEMS if s in systems and s not in side]
  running = {s: _start_beside(jobs[s], configs[s], os.path.join(workdir, s)) for s in side}
  for s in side:
    print(
        f"=== {s}: running beside the chain (expected {_minutes(expected[s])}); output in "
        f"{os.path.join(workdir, s, 'log.txt')} ===",
        flush=True,
    )
  for i, system in enumerate(todo):
    elapsed = time.perf_counter() - start
    eta = sum(expected[s] for s in todo[i:])
    print(
        f"\n=== chain {i + 1}/{len(todo)}: {system} (elapsed {_minutes(elapsed)}, "
        f"expected {_minutes(expected[system])}, chain ETA {_minutes(eta)}) ===",
        flush=True,
    )
    if system == "user_rep" and not os.path.exists(larp_catalogue_export(workdir)):
      raise FileNotFoundError(
          f"{larp_catalogue_export(workdir)} is missing: run LARP first (its report writes it "
          "when config.recommenders.frameworks is set, i.e. train/valid/test are embedded)."
      )
    t0 = time.perf_counter()
    if system == "map2t" and chain.map2t_cut_time == "own":
      export_z_at_map2t_cut_time(configs, workdir)
    results[system] = _flat(jobs[system](configs[system], os.path.join(workdir, system)))
    seconds[system] = time.perf_counter() - t0
    print(f"=== {system} done in {_minutes(seconds[system])} ===", flush=True)
  for system, process in running.items():
    if process.is_alive():
      print(f"\n=== waiting for {system} (running beside) ===", flush=True)
    process.join()
    log = os.path.join(workdir, system, "log.txt")
    if process.exitcode != 0:
      raise RuntimeError(f"{system} (run beside the chain) failed: see {log}")
    seconds[system] = beside_seconds(os.path.join(workdir, system))
    print(f"\n=== {system} (beside the chain, {_minutes(seconds[system])}) ===")
    print(_report_of(log), flush=True)
  for system in SYSTEMS:
    path = os.path.join(workdir, system, "results.json")
    if system not in results and os.path.exists(path):
      with open(path) as f:
        results[system] = json.load(f)
  outcome = claims(results)
  summary = {
      "seconds": seconds,
      "total_seconds": time.perf_counter() - start,
      "beside": side,
      "claims": outcome,
      "results_files": {s: os.path.join(workdir, s, "results.json") for s in results},
  }
  with open(os.path.join(workdir, "results.json"), "w") as f:
    json.dump(summary, f, indent=1, sort_keys=True, default=_json_default)
  if seconds:
    timings = {**_expected(workdir), **seconds}
    with open(os.path.join(workdir, "chain_timings.json"), "w") as f:
      json.dump(timings, f, indent=1)
  print(format_summary(summary))
  return {**summary, "results": results}


BESIDE_SECONDS = "beside_seconds.json"  # in the system's workdir: its process's own duration


def beside_seconds(workdir: str) -> float:
  """Seconds a system run beside the chain took in its own process (interpreter start to its job's
  end), as it wrote them to ``workdir/beside_seconds.json``; the chain joins it only after its
  own systems, so the join time would be the chain's duration, not the system's."""
  with open(os.path.join(workdir, BESIDE_SECONDS)) as f:
    return float(json.load(f)["seconds"])


def _beside_main(job: Callable[[Any, str], Any], config: Any, workdir: str, started: float) -> None:
  """Entry point of a system run beside the chain (a spawned process): output to log.txt, its
  duration since ``started`` (the parent's ``time.time()`` at the spawn) to beside_seconds.json."""
  os.makedirs(workdir, exist_ok=True)
  log = open(os.path.join(workdir, "log.txt"), "w", buffering=1)
  os.dup2(log.fileno(), 1)
  os.dup2(log.fileno(), 2)
  sys.stdout = sys.stderr = log
  job(config, workdir)
  with open(os.path.join(workdir, BESIDE_SECONDS), "w") as f:
    json.dump({"seconds": time.time() - started}, f)


def _start_beside(job, config: Any, workdir: str) -> multiprocessing.process.BaseProcess:
  """The started process running ``job(config, workdir)`` in a fresh interpreter (spawn: its own
  JAX runtime; XLA's thread pool and the chain's share the cores); it times itself."""
  process = multiprocessing.get_context("spawn").Process(
      target=_beside_main, args=(job, config, workdir, time.time()), name=os.path.basename(workdir)
  )
  process.start()
  return process


def _report_of(log: str) -> str:
  """The printed report of a log: from the first line of its report (MOSTRA's 'Table 1') on."""
  with open(log) as f:
    lines = [line.rstrip("\n") for line in f]
  for i, line in enumerate(lines):
    if line.startswith(REPORT_STARTS):
      return "\n".join(x for x in lines[i:] if "\r" not in x)
  return "\n".join(lines[-40:])


def format_summary(summary: dict[str, Any]) -> str:
  lines = ["\nMain job (the chain): seconds per system"]
  for system, s in summary["seconds"].items():
    lines.append(f"  {system:<10} {s:8.1f} s")
  lines.append(f"  {'total':<10} {summary['total_seconds']:8.1f} s")
  lines.append("Demo claims:")
  for claim, holds in summary["claims"].items():
    lines.append(f"  {'holds ' if holds else 'FAILS '} {claim}")
  return "\n".join(lines)


def _json_default(value: Any) -> Any:
  if isinstance(value, np.generic):
    return value.item()
  raise TypeError(f"not JSON serialisable: {type(value)}")


def _default_jobs() -> dict[str, Callable[[Any, str], Any]]:
  # pylint: disable=g-import-not-at-top
  from larp_jax.jobs import larp_job, map2t_job, mostra_job, user_rep_job

  return {
      "larp": larp_job.train_and_evaluate,
      "user_rep": user_rep_job.train_and_evaluate,
      "map2t": map2t_job.train_and_evaluate,
      "mostra": mostra_job.train_and_evaluate,
  }
