"""``hilnas space``: the registered search spaces, their decisions, options and reference
architectures (what another tool must measure for a device to join)."""

from __future__ import annotations

import json

import typer
from hilnas.flows import cli_common
from rich.table import Table

space_app = typer.Typer(
    name="space",
    help="Search spaces: list them, show one's decisions, options and reference architectures.",
    no_args_is_help=True,
)


@space_app.command("list")
def list_spaces(
    as_json: bool = typer.Option(False, "--json", help="Print machine-readable JSON (a list)."),
) -> None:
    """The registered search spaces with their size and number of decisions."""
    from hilnas.pipeline.spaces import available_spaces, get_space

    rows = []
    for name in available_spaces():
        sp = get_space(name)
        rows.append(
            {
                "name": name,
                "decisions": sp.num_decisions,
                "size": str(sp.size()),
                "enumerable": sp.enumerable,
                "reference_architectures": len(sp.reference_architectures()),
            }
        )
    if as_json:
        cli_common.console.print_json(json.dumps(rows))
        return
    table = Table(title="search spaces")
    for col in ("name", "decisions", "size", "enumerable", "references"):
        table.add_column(col)
    for r in rows:
        size = int(r["size"])
        table.add_row(
            r["name"],
            str(r["decisions"]),
            f"{size:,}" if size < 10**9 else f"{size:.3e}",
            "yes" if r["enumerable"] else "no",
            str(r["reference_architectures"]),
        )
    cli_common.console.print(table)


@space_app.command("show")
def show_space(
    name: str = typer.Argument(..., help="A space name (see `hilnas space list`)."),
    as_json: bool = typer.Option(
        False, "--json", help="Print an object; `reference_architectures` lists their strings."
    ),
) -> None:
    """One space: decisions and options, size, model configuration, reference architectures."""
    from hilnas.pipeline.spaces import get_space

    info = get_space(name).describe()
    if as_json:
        # plain print: a script reads this, so no wrapping and no markup
        typer.echo(json.dumps(info, indent=1))
        return
    con = cli_common.console
    con.print(
        f"[bold]{info['name']}[/]: {len(info['decisions'])} decisions, size {int(info['size']):,}"
        f" ({'enumerable' if info['enumerable'] else 'not enumerable'}), model "
        f"{info['model_config']}",
        highlight=False,
    )
    table = Table(title="decisions")
    table.add_column("decision")
    table.add_column("options")
    for d in info["decisions"]:
        table.add_row(d["name"], ", ".join(d["options"]))
    con.print(table)
    con.print(f"example: {info['example']}", highlight=False, soft_wrap=True)
    con.print(
        f"{len(info['reference_architectures'])} reference architectures (measure these for a "
        f"device to join; `hilnas space show {info['name']} --json` lists them for a script):",
        highlight=False,
    )
    for s in info["reference_architectures"]:
        con.print(f"  {s}", highlight=False, soft_wrap=True)


def register(app: typer.Typer) -> None:
    app.add_typer(space_app)
