"""The simulation report: a Markdown summary and one PNG per campaign (spend vs target)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from adrank.simulation.experiment import Experiment

OVERSPEND_TARGET = 0.02  # of budget
UTILIZATION_TARGET = 0.95  # for campaigns with enough demand
# A budget of fewer charges than this cannot meet both targets whatever the controller does:
# with overspend capped at 2 %, the last charge that does not fit is lost, up to 1 / charges.
MIN_CHARGES = 20


def _exhausted_at(minute_spend: np.ndarray, budgets: np.ndarray) -> np.ndarray:
    """Hour of the day each campaign's spend reached its budget (nan: never)."""
    cumulative = np.cumsum(minute_spend, axis=1)
    reached = cumulative >= budgets[:, None] * 0.999
    return np.where(reached.any(axis=1), reached.argmax(axis=1) / 60.0, np.nan)


def summary(experiment: Experiment) -> dict[str, np.ndarray]:
    """Per budgeted campaign (columns [B], in ``experiment.world.campaign_ids`` order)."""
    budgeted = experiment.budgeted
    budgets = experiment.budgets[budgeted]
    out = {}
    largest = experiment.largest_charge[budgeted]
    with np.errstate(divide="ignore"):
        out["charges_in_budget"] = np.where(largest > 0, budgets / largest, np.inf)
    for name, result in (("paced", experiment.paced), ("unpaced", experiment.unpaced)):
        if result is None:
            continue
        minute_spend = result.minute_spend[budgeted]
        spend = minute_spend.sum(axis=1)
        out[f"{name}_utilization"] = spend / budgets
        out[f"{name}_overspend"] = np.maximum(spend - budgets, 0.0) / budgets
        out[f"{name}_exhausted_at"] = _exhausted_at(minute_spend, budgets)
        cumulative = np.cumsum(minute_spend, axis=1) / budgets[:, None]
        target = experiment.config.target_curve(np.arange(1, 1441) / 1440)
        out[f"{name}_max_gap"] = np.abs(cumulative - target).max(axis=1)
    return out


def write_report(experiment: Experiment, out_dir: str | Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    numbers = summary(experiment)
    hours = np.arange(1, 1441) / 60.0
    target_share = experiment.config.target_curve(np.arange(1, 1441) / 1440)
    world = experiment.world
    budgeted = np.flatnonzero(experiment.budgeted)
    budgets = experiment.budgets[budgeted]
    paced = experiment.paced.minute_spend[budgeted]
    unpaced = experiment.unpaced.minute_spend[budgeted]
    enough = experiment.enough_demand[budgeted]
    rows = []
    for i, campaign in enumerate(world.campaign_ids[budgeted].tolist()):
        figure, axes = plt.subplots(figsize=(7, 3.5))
        axes.plot(hours, budgets[i] * target_share, "k--", label="target (traffic curve, lead)")
        axes.plot(hours, np.cumsum(paced[i]), label="pacing on")
        axes.plot(hours, np.cumsum(unpaced[i]), label="pacing off")
        axes.axhline(budgets[i], color="grey", linewidth=0.8)
        axes.set(xlabel="hour of day", ylabel="cumulative spend", xlim=(0, 24))
        axes.set_title(f"campaign {campaign}: budget {budgets[i]:.2f}")
        axes.legend(loc="upper left", fontsize=8)
        figure.tight_layout()
        plot = f"campaign_{campaign}.png"
        figure.savefig(out_dir / plot, dpi=90)
        plt.close(figure)
        objective = ("CPM", "CPC", "oCPM")[
            int(world.catalog.objective[world.catalog.campaign_id == campaign][0])
        ]
        exhausted = numbers["unpaced_exhausted_at"][i]
        rows.append(
            f"| {campaign} | {objective} | {budgets[i]:.2f} | "
            f"{numbers['charges_in_budget'][i]:.0f} | "
            f"{'yes' if enough[i] else 'no'} | "
            f"{numbers['paced_utilization'][i]:.1%} | {numbers['paced_overspend'][i]:.2%} | "
            f"{numbers['paced_max_gap'][i]:.1%} | "
            f"{numbers['unpaced_utilization'][i]:.1%} | {numbers['unpaced_overspend'][i]:.2%} | "
            f"{'-' if np.isnan(exhausted) else f'{exhausted:.1f} h'} | "
            f"![campaign {campaign}]({plot}) |"
        )
    over_ok = (numbers["paced_overspend"] <= OVERSPEND_TARGET).all()
    util_ok = (numbers["paced_utilization"][enough] >= UTILIZATION_TARGET).all()
    sizable = enough & (numbers["charges_in_budget"] >= MIN_CHARGES)
    lines = [
        "# adrank simulate: one day of traffic, pacing on and off",
        "",
        f"{experiment.paced.requests} requests, {experiment.paced.impressions} ad impressions "
        f"with pacing on ({experiment.unpaced.impressions} off); {len(budgets)} campaigns with a "
        f"budget of {len(world.campaign_ids)} serving. Ranked by adrank's Ranker over the "
        f"exported model {world.version_dir} (in process); the model's predicted rates are "
        "taken as the truth when clicks and conversions are drawn.",
        "",
        "Targets with pacing on:",
        f"- overspend <= {OVERSPEND_TARGET:.0%} of budget for every campaign: "
        f"**{'met' if over_ok else 'NOT met'}** "
        f"(worst {numbers['paced_overspend'].max():.2%}; pacing off: "
        f"{numbers['unpaced_overspend'].max():.2%})",
        f"- >= {UTILIZATION_TARGET:.0%} of budget spent where demand is enough: "
        f"**{'met' if util_ok else 'NOT met'}** "
        f"(lowest {numbers['paced_utilization'][enough].min(initial=np.inf):.1%}; pacing off: "
        f"{numbers['unpaced_utilization'][enough].min(initial=np.inf):.1%}); among the "
        f"{sizable.sum()} of them whose budget holds at least {MIN_CHARGES} of their largest "
        f"charges: lowest {numbers['paced_utilization'][sizable].min(initial=np.inf):.1%}",
        "",
        "*Enough demand*: the pilot run with no budget (multiplier 1 all day) spent more than the "
        "budget. *Max gap*: largest distance between cumulative spend and the target curve "
        "(budget x expected traffic share, ``lead_s`` early), as a share of budget.",
        "",
        "| campaign | objective | budget | budget / largest charge | enough demand | on: spent | "
        "on: overspend | "
        "on: max gap | off: spent | off: overspend | off: budget gone at | plot |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
        *rows,
        "",
    ]
    report = out_dir / "report.md"
    report.write_text("\n".join(lines))
    return report
