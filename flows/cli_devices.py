"""``hilnas devices``: list local and stored devices.

(``hilnas devices import`` is registered by ``cli_predict``, which validates the reference
architectures of an external device.)
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import typer
from hilnas.flows import cli_common
from rich.table import Table

devices_app = typer.Typer(
    name="devices",
    help="Devices: what is attached here and what the measurement store knows.",
    no_args_is_help=True,
)

DB_OPTION_HELP = (
    "Database URL of the measurement store (default: $HILNAS_DATABASE_URL, else "
    "sqlite:///$HILNAS_HOME/hilnas.db)."
)


@contextmanager
def open_store(db: str | None, *, read_only: bool = False) -> Iterator[Any]:
    """The measurement store for one command; ``read_only`` for commands that only read (they
    work on an archived, read-only store and never create a database file)."""
    from hilnas.pipeline.store import MeasurementStore

    store = MeasurementStore(db, read_only=read_only)
    try:
        yield store
    finally:
        store.close()


def _local_devices() -> list[Any]:
    from hilnas.devices import discover

    return list(discover())


def device_rows(store: Any | None) -> list[dict[str, Any]]:
    """Local devices (discovered now) merged with the store's devices (none when ``store`` is
    None: no store exists yet), as plain dicts."""
    local = {d.id: d for d in _local_devices()}
    stored = {d.id: d for d in store.devices()} if store is not None else {}
    counts: dict[str, list[dict[str, Any]]] = {}
    for s in store.config_summaries() if store is not None else ():
        counts.setdefault(s.device_id, []).append(
            {
                "config_key": s.config_key,
                "space": s.space,
                "model_config": s.model_config_key,
                "ok": s.ok,
                "failed": s.failed,
            }
        )
    external = {e.name: e for e in store.external_devices()} if store is not None else {}
    rows = []
    for dev_id in list(local) + [i for i in stored if i not in local]:
        info = local.get(dev_id) or stored[dev_id]
        d = info.to_dict()
        seen = store.device_seen(dev_id) if store is not None else None
        d.update(
            local=dev_id in local,
            stored=dev_id in stored,
            first_seen=seen[0].isoformat() if seen else None,
            last_seen=seen[1].isoformat() if seen else None,
            configurations=counts.get(dev_id, []),
        )
        if dev_id in external:
            e = external[dev_id]
            d["external"] = {
                "space": e.space,
                "rows": e.count,
                "with_energy": e.with_energy,
                "source": e.source_name,
            }
        rows.append(d)
    return rows


@devices_app.command("list")
def list_devices(
    as_json: bool = typer.Option(False, "--json", help="Print machine-readable JSON (a list)."),
    db: str | None = typer.Option(None, "--db", help=DB_OPTION_HELP),
) -> None:
    """Devices attached here (discovered now) and devices known to the store."""
    from hilnas.pipeline.store import StoreNotFoundError

    try:
        with open_store(db, read_only=True) as store:
            rows = device_rows(store)
            url = store.url
    except StoreNotFoundError as exc:  # no store yet: the local devices are still worth listing
        rows = device_rows(None)
        url = f"none yet: {exc}"
    if as_json:
        typer.echo(json.dumps(rows, indent=2, default=str))
        return
    table = Table(title=f"devices (store: {url})", title_justify="left")
    table.add_column("id", no_wrap=True)
    table.add_column("kind", no_wrap=True)
    table.add_column("name", overflow="fold")
    table.add_column("aliases", overflow="fold")
    table.add_column("here", no_wrap=True)
    table.add_column("energy", overflow="fold")
    table.add_column("measured (ok)", overflow="fold")
    notes: list[str] = []
    for d in rows:
        energy = d["energy_counter"]
        if not energy:
            notes.append(f"{d['id']}: energy unknown: {d['energy_unavailable_reason'] or '-'}")
            energy = f"unknown [{len(notes)}]"
        configs = d["configurations"]
        measured = "\n".join(
            f"{c['config_key'].removeprefix(d['id'] + '/')}: {c['ok']}" for c in configs
        )
        if "external" in d:
            measured = f"external: {d['external']['rows']} rows"
        table.add_row(
            d["id"],
            d["kind"],
            d["name"],
            ", ".join(d["aliases"]) or "-",
            "yes" if d["local"] else "no",
            energy,
            measured or "-",
        )
    cli_common.console.print(table)
    for i, note in enumerate(notes, start=1):
        cli_common.console.print(f"[{i}] {note}", highlight=False, markup=False)
    if not any(d["local"] for d in rows):
        cli_common.err_console.print(
            "no local device was discovered (see `hilnas -v devices list`)"
        )


def register(app: typer.Typer) -> None:
    app.add_typer(devices_app, name="devices")
