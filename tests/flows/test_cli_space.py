"""``hilnas space list`` and ``hilnas space show``: what another tool reads to measure a space's
reference architectures."""

from __future__ import annotations

import json

from hilnas.pipeline.spaces import available_spaces, get_space


def test_space_list_names_every_registered_space(hilnas_cli):
    code, out, err = hilnas_cli(["space", "list", "--json"])
    assert code == 0, err
    rows = json.loads(out)
    assert [r["name"] for r in rows] == available_spaces()
    by_name = {r["name"]: r for r in rows}
    assert by_name["nb201"]["size"] == "15625" and by_name["nb201"]["enumerable"] is True
    assert by_name["nb201"]["reference_architectures"] == 10


def test_space_show_json_lists_parseable_reference_architectures(hilnas_cli):
    for name in available_spaces():
        code, out, err = hilnas_cli(["space", "show", name, "--json"])
        assert code == 0, err
        info = json.loads(out)
        sp = get_space(name)
        refs = info["reference_architectures"]
        assert refs and all(isinstance(s, str) for s in refs)
        # each string is the space's own canonical form of one of its reference architectures
        assert [sp.format(sp.parse(s)) for s in refs] == refs
        assert [d["name"] for d in info["decisions"]] == list(sp.decisions)


def test_space_show_table_and_unknown_space(hilnas_cli):
    code, out, _ = hilnas_cli(["space", "show", "nb201"])
    assert code == 0 and "reference architectures" in out and "nor_conv_3x3" in out
    code, _, err = hilnas_cli(["space", "show", "resnet"])
    assert code == 2 and err.startswith("error:") and "nb201" in err and "Traceback" not in err
