"""The MetaHypernetwork's part of the GPT-S search benchmark: leave-one-device-out fronts.

For each left-out device ``d`` of HW-GPT-Bench's 10: the latency and energy predictors are
fit on the measured table (``measured.csv``) of the other 9 devices only, ONE three-objective
search (perplexity, latency_ms, energy_mj) is trained for those 9 with ``queries`` perplexity
queries in total (the HW-GPT-Bench surrogate as the oracle), and ``d`` joins zero-shot from its
measured values on the space's 10 reference architectures. Its fronts for every objective set
come from that one run (:meth:`SpaceSearchModel.front` with ``objectives=``: preferences on a
face of the simplex). The architectures are handed back as codes and scored by the benchmark
with the oracles, never with the search's predictions.

Also reported: zero-shot Spearman of the left-out device's predicted latency and energy against
its measured values (all measured rows), the issue's predictor target.

``python -m hilnas.pipeline.benchmarks.search_gpt_hypernet --ablate a100,cpu_xeon_gold,rtx2080``
(:func:`ablation`) diagnoses what limits the fronts: per left-out device it trains the previous
configuration (one-hot quality model, queries where the hypernetwork points) and the current one
(quality model with cost features, queries on the predicted fronts), and scores each run's fronts
read the previous way (argmax sweep + greedy walk, 100 points) and the current way (NSGA-II on the
predicted objectives, every non-dominated point), with the search's own predictions or with the
TRUE oracle values in their place (true perplexity, true costs, both): an upper bound of each
part. Results: ``results/search_gpt_ablation.{json,md}``.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

OBJECTIVES = ("perplexity", "latency_ms", "energy_mj")


def loo_fronts(
    devices: Sequence[str],
    objective_sets: Mapping[str, tuple[str, ...]],
    *,
    seed: int = 0,
    queries: int = 300,
    steps: int = 600,
    points: int | None = None,
    costs: str = "surrogate",
    log: Any = print,
    evaluations: int | None = None,
    config: Mapping[str, Any] | None = None,
    keep_models: bool = False,
    cost_model: str = "space",
) -> tuple[dict[tuple[str, str], np.ndarray], dict[str, Any]]:
    """Codes per ``(device, objective set)`` and per-device details (wall time, Spearman).

    ``costs``: what the predictors are trained on and what the left-out device's reference
    values are: ``surrogate`` (the oracles' own values on the 10,000 measured architectures, so
    that the search and its scoring live in one world) or ``measured`` (the real measurements:
    the predictors then model hardware the oracle only approximates). ``points``,
    ``evaluations``: :meth:`SpaceSearchModel.front`'s (None: every non-dominated point, its
    default predicted-NSGA-II budget); ``config``: further :class:`SpaceSearchConfig` fields;
    ``keep_models``: the trained model and the joined target in ``details[dev]["model"]`` /
    ``["target"]`` (not JSON). ``cost_model``: the search's zero-shot cost model per metric,
    ``space`` (:class:`~hilnas.pipeline.predictors.space.SpacePredictor` fit on the 9 training
    devices' table) or a :data:`~hilnas.pipeline.spacesearch.targets.COST_MODELS` choice that
    uses the 9 training devices' oracles (:mod:`hilnas.pipeline.predictors.oracle_mix`): e.g.
    ``oracle_mix`` for both metrics, ``mix-energy`` for energy only."""
    from hilnas.pipeline.predictors import spearman
    from hilnas.pipeline.predictors.oracle_mix import OracleMix
    from hilnas.pipeline.predictors.space import fit_predictor, gpt_measured_table
    from hilnas.pipeline.spaces import get_space
    from hilnas.pipeline.spaces.gpt_s.surrogates import DEVICES, load_surrogates
    from hilnas.pipeline.spacesearch.search import (
        FRONT_EVALUATIONS,
        QualityOracle,
        SpaceSearchConfig,
        train_space_search,
    )
    from hilnas.pipeline.spacesearch.targets import SpaceTarget, uses_oracle_mix

    space = get_space("gpt_s")
    sur = load_surrogates()
    tables = {m: gpt_measured_table(m) for m in OBJECTIVES[1:]}
    if costs == "surrogate":
        tables = {m: _surrogate_table(t, sur) for m, t in tables.items()}
    found: dict[tuple[str, str], np.ndarray] = {}
    details: dict[str, Any] = {}
    for dev in devices:
        t0 = time.perf_counter()
        train = [d for d in DEVICES if d != dev]
        predictors = {m: fit_predictor(t, devices=train) for m, t in tables.items()}
        for m in tables:
            if uses_oracle_mix(cost_model, m):
                predictors[m] = OracleMix(metric=m, devices=tuple(train))
        fit_s = time.perf_counter() - t0
        rho = {}
        for m, t in tables.items():
            y = t.column(dev)
            pred = predictors[m].predict_features(
                _features(space, t.codes), t.reference_values(dev)
            )
            ok = np.isfinite(y)
            rho[m] = round(float(spearman(pred[ok], y[ok])), 4)
        targets = [
            SpaceTarget.from_values(
                "gpt_s", d, {m: t.reference_values(d) for m, t in tables.items()}
            )
            for d in train
        ]
        oracle = QualityOracle(
            "perplexity",
            lambda c: sur.perplexity(np.asarray(c, dtype=np.int64)),
            "HW-GPT-Bench perplexity surrogate",
        )
        cfg = SpaceSearchConfig(
            space="gpt_s",
            objectives=OBJECTIVES,
            queries=queries,
            steps=steps,
            seed=seed,
            **dict(config or {}),
        )
        model = train_space_search(cfg, targets, predictors, oracle)
        joined = SpaceTarget.from_values(
            "gpt_s", dev, {m: t.reference_values(dev) for m, t in tables.items()}
        )
        t1 = time.perf_counter()
        for name, objs in objective_sets.items():
            pts = model.front(
                joined,
                points=points,
                objectives=objs,
                evaluations=FRONT_EVALUATIONS if evaluations is None else evaluations,
            )
            found[(dev, name)] = np.asarray([space.parse(p.arch) for p in pts], dtype=np.int64)
        details[dev] = {
            "fit_s": round(fit_s, 1),
            "search_s": model.info["wall_s"],
            "front_s": round(time.perf_counter() - t1, 1),
            "queries": len(oracle.queried),
            "zero_shot_spearman": rho,
            "cost_fidelity": model.info["cost_fidelity"],
        }
        log(f"hypernet LOO {dev}: {details[dev]}")
        if keep_models:
            details[dev]["model"], details[dev]["target"] = model, joined
    return found, details


def _surrogate_table(table: Any, sur: Any) -> Any:
    """``table`` with its values replaced by the surrogate oracle's (NaN where invalid)."""
    from dataclasses import replace

    fn = sur.latency_ms if table.metric == "latency_ms" else sur.energy_mj
    values = np.stack([fn(table.codes, d) for d in table.devices], axis=1)
    return replace(table, values=np.where(values > 0, values, np.nan))


def _features(space: Any, codes: np.ndarray) -> np.ndarray:
    from hilnas.pipeline.predictors.space import arch_features

    return arch_features(space, [tuple(int(v) for v in c) for c in codes])


# ----------------------------------------------------------------------------- ablation
#: (name, search configuration) of the ablation: the previous and the current defaults.
ABLATION_RUNS: dict[str, dict[str, Any]] = {
    "previous": {"quality_extras": False, "query_strategy": "hypernet"},
    "current": {},
}
#: (name, front evaluations, points): how a front is read.
ABLATION_FRONTS: dict[str, tuple[int | None, int | None]] = {
    "greedy-100": (0, 100),
    "nsga2-pred": (None, None),
}
#: Which predictions are replaced by the TRUE oracle's values.
ABLATION_TRUTH: dict[str, tuple[bool, bool]] = {
    "predicted": (False, False),
    "true-quality": (True, False),
    "true-costs": (False, True),
    "true-both": (True, True),
}


def _with_truth(model: Any, sur: Any, dev: str, quality: bool, costs: bool) -> Any:
    """``model.predict`` with the chosen columns replaced by the oracle's true values."""
    orig = type(model).predict.__get__(model)

    def predict(codes: Any, target: Any) -> np.ndarray:
        V = orig(codes, target)
        X = np.asarray([tuple(int(v) for v in c) for c in codes], dtype=np.int64)
        for j, o in enumerate(model.objectives):
            if o == "perplexity" and quality:
                V[:, j] = sur.perplexity(X)
            elif o == "latency_ms" and costs:
                V[:, j] = sur.latency_ms(X, dev)
            elif o == "energy_mj" and costs:
                V[:, j] = sur.energy_mj(X, dev)  # NaN where invalid: never on a front
        return V

    return predict


def ablation(
    devices: Sequence[str],
    *,
    queries: int = 500,
    steps: int = 600,
    log: Any = print,
) -> dict[str, Any]:
    """HV ratios per (device, run, front reading, truth, objective set); see the module doc.

    Each device's reference front is the non-dominated union of the 20,000-evaluation NSGA-II
    reference run (seed 1000, as in the benchmark) and every front scored here."""
    from hilnas.pipeline.benchmarks.search_gpt import (
        OBJECTIVE_SETS,
        REFERENCE_EVALUATIONS,
        REFERENCE_SEED,
    )
    from hilnas.pipeline.spaces import get_space
    from hilnas.pipeline.spaces.gpt_s.surrogates import load_surrogates
    from hilnas.pipeline.spacesearch.baselines import nsga2
    from hilnas.pipeline.spacesearch.models import cost_extras, masked_onehot
    from hilnas.pipeline.spacesearch.problem import gpt_problem, valid_front_mask

    space = get_space("gpt_s")
    sur = load_surrogates()
    out: dict[str, Any] = {"devices": {}, "queries": queries, "steps": steps}
    for dev in devices:
        problems = {on: gpt_problem(dev, objs, sur) for on, objs in OBJECTIVE_SETS.items()}
        runs = {on: nsga2(p, REFERENCE_EVALUATIONS, REFERENCE_SEED) for on, p in problems.items()}
        ref_runs = {on: r.front for on, r in runs.items()}
        ref_codes = np.unique(np.concatenate([r.front_codes for r in runs.values()]), axis=0)
        found: dict[tuple[str, str, str, str], np.ndarray] = {}
        info: dict[str, Any] = {}
        for run, conf in ABLATION_RUNS.items():
            t0 = time.perf_counter()
            _, det = loo_fronts(
                [dev], {}, queries=queries, steps=steps, config=conf, keep_models=True, log=log
            )
            d = det[dev]
            model, joined = d.pop("model"), d.pop("target")
            q = model.quality
            X = [tuple(int(v) for v in c) for c in ref_codes]
            extra = cost_extras(space, X) if q.n_extra else None
            pred = q.predict(masked_onehot(space, X), extra)
            true = sur.perplexity(ref_codes)
            info[run] = {
                "search_s": d["search_s"],
                "quality_rel_error_on_reference_fronts": round(
                    float(np.mean(np.abs(pred / true - 1))), 5
                ),
                "reference_front_archs": len(X),
            }
            for fname, (evals, pts) in ABLATION_FRONTS.items():
                for truth, (tq, tc) in ABLATION_TRUTH.items():
                    model.predict = _with_truth(model, sur, dev, tq, tc)
                    model._bounds_cache.clear()
                    for on, objs in OBJECTIVE_SETS.items():
                        fr = model.front(
                            joined,
                            points=pts,
                            objectives=objs,
                            evaluations=evals if evals is not None else _default_evals(),
                        )
                        found[(run, fname, truth, on)] = np.asarray(
                            [space.parse(p.arch) for p in fr], dtype=np.int64
                        )
            del model.predict
            info[run]["wall_s"] = round(time.perf_counter() - t0, 1)
            log(f"ablation {dev} {run}: {info[run]}")
        cells: dict[str, Any] = {}
        for on, problem in problems.items():
            Fs = {k: problem.evaluate(c) for k, c in found.items() if k[3] == on}
            allF = np.concatenate([ref_runs[on], *Fs.values()], axis=0)
            ref = np.unique(allF[valid_front_mask(allF)], axis=0)
            ref_hv = problem.hv(ref)
            refn = problem.normalized(ref)
            cells[on] = {
                "reference_points": int(len(ref)),
                "reference_range": [refn.min(0).round(3).tolist(), refn.max(0).round(3).tolist()],
            }
            for (run, fname, truth, _), F in Fs.items():
                ok = valid_front_mask(F)
                Fn = problem.normalized(F[ok])
                cells[on][f"{run}/{fname}/{truth}"] = {
                    "hv_ratio": round(problem.hv(F) / ref_hv, 4),
                    "archs": int(len(F)),
                    "non_dominated": int(ok.sum()),
                    "range": [Fn.min(0).round(3).tolist(), Fn.max(0).round(3).tolist()]
                    if len(Fn)
                    else None,
                }
        out["devices"][dev] = {"runs": info, "sets": cells}
    return out


def energy_extrapolation(devices: Sequence[str], log: Any = print) -> dict[str, Any]:
    """Where each device's perplexity-energy reference front lives relative to what a
    zero-shot energy predictor can learn: the share of the front's architectures whose
    surrogate energy lies below the lowest surrogate energy over the 10,000 measured
    architectures (the predictors' training rows), and the left-out predictor's median relative
    error on the front vs on the measured rows."""
    from hilnas.pipeline.benchmarks.search_gpt import REFERENCE_EVALUATIONS, REFERENCE_SEED
    from hilnas.pipeline.predictors.space import fit_predictor, gpt_measured_table
    from hilnas.pipeline.spaces import get_space
    from hilnas.pipeline.spaces.gpt_s.surrogates import DEVICES, load_surrogates
    from hilnas.pipeline.spacesearch.baselines import nsga2
    from hilnas.pipeline.spacesearch.problem import gpt_problem

    space = get_space("gpt_s")
    sur = load_surrogates()
    table = _surrogate_table(gpt_measured_table("energy_mj"), sur)
    out: dict[str, Any] = {}
    for dev in devices:
        res = nsga2(
            gpt_problem(dev, ("perplexity", "energy_mj"), sur),
            REFERENCE_EVALUATIONS,
            REFERENCE_SEED,
        )
        codes = np.asarray(res.front_codes, dtype=np.int64)
        e_front = sur.energy_mj(codes, dev)
        e_meas = table.column(dev)
        pred = fit_predictor(table, devices=[d for d in DEVICES if d != dev])
        ref = table.reference_values(dev)
        p_front = pred.predict_features(_features(space, codes), ref)
        ok = np.isfinite(e_meas)
        p_meas = pred.predict_features(_features(space, table.codes[ok]), ref)
        out[dev] = {
            "front_archs": int(len(codes)),
            "measured_min_mj": round(float(np.nanmin(e_meas)), 2),
            "front_min_mj": round(float(np.min(e_front)), 2),
            "front_share_below_measured_min": round(float(np.mean(e_front < np.nanmin(e_meas))), 3),
            "median_rel_error_front": round(float(np.median(np.abs(p_front / e_front - 1))), 3),
            "median_rel_error_measured": round(
                float(np.median(np.abs(p_meas / e_meas[ok] - 1))), 3
            ),
        }
        log(f"energy extrapolation {dev}: {out[dev]}")
    return out


def _default_evals() -> int:
    from hilnas.pipeline.spacesearch.search import FRONT_EVALUATIONS

    return FRONT_EVALUATIONS


def ablation_markdown(res: dict[str, Any]) -> str:
    """One table per device: rows = run / front reading / truth, columns = objective sets."""
    runs = res.get("merged") or [dict(res["settings"], devices=list(res["devices"]))]
    lines = ["# GPT-S hypernetwork fronts: what limits the HV ratio (ablation)", ""]
    for s in runs:
        lines += [
            f"Generated {s['finished']} by `python -m hilnas.pipeline.benchmarks."
            f"search_gpt_hypernet --ablate {','.join(s['devices'])}` on {s['machine']}; load "
            f"before {s['load_before']}, after {s['load_after']}; {s['total_wall_s']} s.",
            "",
        ]
    lines += [
        f"Leave-one-device-out, B = {res['queries']} perplexity queries, {res['steps']} steps. "
        "Runs: `previous` = one-hot quality model, queries where the hypernetwork points; "
        "`current` = quality model with the space's cost features, queries on the predicted "
        "fronts of the training devices. Fronts: `greedy-100` = argmax sweep + greedy walk, 100 "
        "points (the previous reading); `nsga2-pred` = NSGA-II on the predicted objectives "
        "seeded by the hypernetwork, every non-dominated point. `true-*`: the search's "
        "predictions replaced by the oracle's TRUE values (an upper bound of that part). HV "
        "ratio against the union of the 20,000-evaluation NSGA-II reference run and every "
        "front here (so slightly stricter than the benchmark's); cells: HV ratio "
        "(non-dominated architectures).",
        "",
    ]
    for dev, d in res["devices"].items():
        sets = list(d["sets"])
        lines += [f"## {dev}", ""]
        lines += ["| run / front / values | " + " | ".join(sets) + " |"]
        lines += ["|---|" + "---:|" * len(sets)]
        keys = [k for k in d["sets"][sets[0]] if "/" in k]
        for k in keys:
            row = [k] + [
                f"{d['sets'][o][k]['hv_ratio']:.3f} ({d['sets'][o][k]['non_dominated']})"
                for o in sets
            ]
            lines.append("| " + " | ".join(row) + " |")
        lines += [
            "| reference points | "
            + " | ".join(str(d["sets"][o]["reference_points"]) for o in sets)
            + " |",
            "",
        ]
        for run, r in d["runs"].items():
            lines.append(
                f"- `{run}`: quality model's mean relative error on the {r['reference_front_archs']}"
                f" reference-front architectures {r['quality_rel_error_on_reference_fronts']:.4f};"
                f" search {r['search_s']} s."
            )
        lines.append("")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    import argparse
    import json
    import os
    import platform
    import sys
    from datetime import datetime, timezone
    from pathlib import Path

    ap = argparse.ArgumentParser(description="GPT-S hypernetwork front ablation")
    ap.add_argument("--ablate", default="a100,cpu_xeon_gold,rtx2080", help="left-out devices")
    ap.add_argument("--queries", type=int, default=500)
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--out-dir", type=Path, default=Path(__file__).with_name("results"))
    ap.add_argument(
        "--merge",
        nargs="+",
        type=Path,
        default=None,
        help="merge saved ablation JSON files (one run each) into search_gpt_ablation.*",
    )
    ap.add_argument(
        "--energy-check",
        action="store_true",
        help="only the energy-extrapolation check on all 10 devices (search_gpt_energy.*)",
    )
    args = ap.parse_args(argv)
    try:
        from threadpoolctl import threadpool_limits

        limit: Any = threadpool_limits(1)
    except ImportError:  # pragma: no cover
        limit = None
    import torch

    torch.set_num_threads(1)
    before = os.getloadavg()
    t0 = time.perf_counter()
    if args.energy_check:
        return _energy_main(args.out_dir, before, t0)
    if args.merge:
        return _merge_main(args.merge, args.out_dir)
    devices = [d for d in args.ablate.split(",") if d]
    res = ablation(devices, queries=args.queries, steps=args.steps)
    res["devices_order"] = devices
    res["devices"] = {d: res["devices"][d] for d in devices}
    res["settings"] = {
        "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": f"{platform.node()} ({platform.machine()}, {os.cpu_count()} CPUs, Python "
        f"{sys.version.split()[0]})",
        "load_before": [round(x, 2) for x in before],
        "load_after": [round(x, 2) for x in os.getloadavg()],
        "total_wall_s": round(time.perf_counter() - t0, 1),
    }
    del limit
    args.out_dir.mkdir(parents=True, exist_ok=True)
    (args.out_dir / "search_gpt_ablation.json").write_text(json.dumps(res, indent=1) + "\n")
    md = ablation_markdown(res)
    (args.out_dir / "search_gpt_ablation.md").write_text(md)
    print(md)
    return 0


def _merge_main(files: Sequence[Any], out_dir: Any) -> int:
    import json

    parts = [json.loads(f.read_text()) for f in files]
    res: dict[str, Any] = {
        "queries": parts[0]["queries"],
        "steps": parts[0]["steps"],
        "devices": {},
        "merged": [],
    }
    for part in parts:
        if (part["queries"], part["steps"]) != (res["queries"], res["steps"]):
            raise SystemExit("the merged ablations used different --queries / --steps")
        for run in part.get("merged") or [dict(part["settings"], devices=list(part["devices"]))]:
            res["merged"].append(run)
        res["devices"].update(part["devices"])
    res["settings"] = res["merged"][-1]
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "search_gpt_ablation.json").write_text(json.dumps(res, indent=1) + "\n")
    md = ablation_markdown(res)
    (out_dir / "search_gpt_ablation.md").write_text(md)
    print(md)
    return 0


def _energy_main(out_dir: Any, before: Any, t0: float) -> int:
    import json
    import os
    from datetime import datetime, timezone

    from hilnas.pipeline.spaces.gpt_s.surrogates import DEVICES

    res = energy_extrapolation(DEVICES)
    meta = {
        "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "load_before": [round(x, 2) for x in before],
        "load_after": [round(x, 2) for x in os.getloadavg()],
        "total_wall_s": round(time.perf_counter() - t0, 1),
    }
    lines = [
        "# GPT-S: where the perplexity-energy reference fronts live",
        "",
        f"Generated {meta['finished']} by `python -m hilnas.pipeline.benchmarks."
        f"search_gpt_hypernet --energy-check` ({meta['total_wall_s']} s, load before "
        f"{meta['load_before']}, after {meta['load_after']}).",
        "",
        "Per device: the 20,000-evaluation NSGA-II reference run (seed 1000) on perplexity + "
        "energy; share of its front whose SURROGATE energy is below the lowest surrogate "
        "energy of the 10,000 measured architectures the predictors learn from; the zero-shot "
        "energy predictor's (trained without the device) median relative error on the front "
        "and on the measured rows.",
        "",
        "| device | front archs | measured min mJ | front min mJ | share below | median rel. "
        "error front | measured |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for dev, d in res.items():
        lines.append(
            f"| {dev} | {d['front_archs']} | {d['measured_min_mj']} | {d['front_min_mj']} | "
            f"{d['front_share_below_measured_min']:.3f} | {d['median_rel_error_front']:.3f} | "
            f"{d['median_rel_error_measured']:.3f} |"
        )
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "search_gpt_energy.json").write_text(
        json.dumps({"devices": res, "settings": meta}, indent=1) + "\n"
    )
    md = "\n".join(lines) + "\n"
    (out_dir / "search_gpt_energy.md").write_text(md)
    print(md)
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
