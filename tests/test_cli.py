"""The command line: bench report schema, clear errors instead of tracebacks."""

from __future__ import annotations

import json

from selfspec.cli import main

REPORT_KEYS = {"tokens_per_s", "speedup", "mean_accepted", "acceptance_rate", "lossless", "exact"}


def test_bench_writes_the_report(tmp_path, capsys):
    out = tmp_path / "r.json"
    code = main(
        [
            "bench",
            "--model",
            "tiny-llama",
            "--methods",
            "vanilla,pld,hf",
            "--limit",
            "2",
            "--max-new-tokens",
            "12",
            "--dtype",
            "float64",
            "--out",
            str(out),
        ]
    )
    assert code == 0
    report = json.loads(out.read_text())
    assert {"env", "settings", "methods"} <= report.keys()
    assert {"device", "dtype", "threads", "torch", "transformers", "model"} <= report["env"].keys()
    assert report["env"]["dtype"] == "float64"
    assert set(report["methods"]) == {"vanilla", "pld", "hf"}
    for m in report["methods"].values():
        assert m.keys() >= REPORT_KEYS
        assert len(m["prompts"]) == 2
    for name in ("pld", "hf"):  # vanilla is the reference: judging it against itself says nothing
        assert report["methods"][name]["lossless"] is True, name
        assert {"id", "category", "tokens", "tokens_per_s", "speedup", "lossless"} <= m["prompts"][
            0
        ].keys()
    assert report["methods"]["vanilla"]["speedup"] == 1.0
    assert report["methods"]["vanilla"]["mean_accepted"] == 1.0
    curve = report["verify_cost"]
    assert list(curve) == [str(m) for m in range(1, 10)] and curve["1"] == 1.0
    assert all(c > 0 for c in curve.values())
    assert "vanilla" in capsys.readouterr().out

    assert main(["table", str(out)]) == 0  # the README's tables, from the same report
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("| method | tok/s | speed-up |")
    pld = next(line for line in lines if line.startswith("| `pld` |"))
    assert f"| {report['methods']['pld']['tokens_per_s']:.1f} |" in pld
    assert pld.endswith("| True (2/2) |")
    assert any(line.startswith("| cost | 1.00 |") for line in lines)


def test_table_of_a_file_that_is_not_a_report(tmp_path, capsys):
    bad = tmp_path / "notes.md"
    bad.write_text("# not json")
    assert main(["table", str(bad)]) == 2
    assert "Give the JSON file" in capsys.readouterr().err
    assert main(["table", str(tmp_path / "missing.json")]) == 2


def test_malformed_prompt_file_names_the_line(tmp_path, capsys):
    bad = tmp_path / "p.jsonl"
    bad.write_text('{"id": "a", "category": "c", "prompt": "p"}\n{"id": "b", "prompt": }\n')
    assert main(["bench", "--model", "tiny-llama", "--prompts", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "line 2" in err and "Traceback" not in err


def test_missing_field_and_unknown_method(tmp_path, capsys):
    bad = tmp_path / "p.jsonl"
    bad.write_text('{"id": "a", "category": "c"}\n')
    assert main(["bench", "--model", "tiny-llama", "--prompts", str(bad)]) == 2
    assert "missing or empty prompt" in capsys.readouterr().err
    assert main(["bench", "--model", "tiny-llama", "--methods", "vanilla,warp"]) == 2
    assert "Unknown method 'warp'" in capsys.readouterr().err


def test_unsupported_architecture_and_missing_folder(tmp_path, capsys):
    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "gpt2", "n_layer": 1}))
    assert main(["generate", "--model", str(folder), "hi"]) == 2
    assert "Architecture 'gpt2' is not supported" in capsys.readouterr().err
    assert main(["generate", "--model", str(tmp_path / "nothing"), "hi"]) == 2
    assert "No model folder" in capsys.readouterr().err


def test_unknown_model_id_offline(monkeypatch, capsys):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert main(["generate", "--model", "someone/not-a-model", "hi"]) == 2
    assert "not reachable" in capsys.readouterr().err
