"""The networks are listed once (memprobe/train/catalog.py): the training study's models, the
families, predict's built-ins, the CLI's help and messages and the report's copy are all read from
it, and no second list of model names appears in the package (read from the source, ast)."""

import argparse
import ast
import re
from pathlib import Path

import pytest

from memprobe import cli
from memprobe.train import catalog as CAT

PKG = Path(__file__).resolve().parent.parent / "memprobe"
NAMES = {m.name for m in CAT.MODELS}
# two model names next to each other in a string ("cnn, transformer", "mlp or cnn"): a list in prose
_ONE = "|".join(re.escape(n) for n in sorted(NAMES, key=len, reverse=True))
LISTED = re.compile(rf"\b({_ONE})\b\W{{1,4}}(?:and |or )?\b({_ONE})\b")


def test_names_are_unique_and_the_derived_lists_follow_the_table():
    names = [m.name for m in CAT.MODELS]
    assert len(names) == len(set(names))
    assert CAT.BUILTIN_NAMES == tuple(names)
    assert CAT.STUDY_MODELS == tuple(m.name for m in CAT.MODELS if m.study is not None)
    assert set(CAT.FAMILY_MODELS) | set(CAT.DEFAULT_STUDY_MODELS) == set(CAT.STUDY_MODELS)
    assert all(m.study in (None, "network", "family") for m in CAT.MODELS)


def test_the_study_and_predict_read_the_one_table():
    from memprobe.scan import ScanOptions
    from memprobe.train import spec as S

    assert S.BUILTINS == {m.name: m.builder for m in CAT.MODELS}
    assert CAT.parse_study_models("all") == CAT.STUDY_MODELS
    assert CAT.parse_study_models(",".join(reversed(CAT.STUDY_MODELS))) == CAT.STUDY_MODELS
    assert ScanOptions().train_models == CAT.DEFAULT_STUDY_MODELS
    p = cli.build_parser()
    assert p.parse_args(["train", "--model", "all"]).model == CAT.STUDY_MODELS
    assert p.parse_args(["train"]).model == CAT.DEFAULT_STUDY_MODELS
    for m in CAT.MODELS:
        assert S.load_spec(m.name).fn is m.builder
        if m.study is None:  # predict's only: the study refuses it
            with pytest.raises(ValueError, match="choose from"):
                CAT.parse_study_models(m.name)


def test_help_and_errors_list_the_tables_models(capsys):
    p = cli.build_parser()
    sub = next(a for a in p._actions if isinstance(a, argparse._SubParsersAction))
    helps = {name: sub.choices[name].format_help() for name in ("scan", "train", "predict")}
    flat = {k: " ".join(v.split()) for k, v in helps.items()}
    assert f"Built-ins: {', '.join(CAT.BUILTIN_NAMES)}." in flat["predict"]
    assert f"comma-separated: {', '.join(CAT.STUDY_MODELS)} or all" in flat["scan"]
    assert f"{CAT.names_text(CAT.FAMILY_MODELS)} train in PyTorch" in flat["train"]
    with pytest.raises(ValueError, match=re.escape(f"choose from {', '.join(CAT.STUDY_MODELS)} or all")):
        CAT.parse_study_models("nonesuch")


def test_the_reports_copy_matches_the_table():
    """The report may import result records only, so it keeps its own (name, label, title) of the
    study's models: this holds it to the table."""
    from memprobe.report.text import STUDY_MODEL_ORDER, STUDY_MODEL_TEXT

    assert STUDY_MODEL_TEXT == tuple((m.name, m.label, m.title) for m in CAT.MODELS if m.study is not None)
    assert STUDY_MODEL_ORDER == CAT.STUDY_MODELS


def _docstrings(tree: ast.AST) -> set[int]:
    out = set()
    for node in ast.walk(tree):
        if (isinstance(node, (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and node.body
                and isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant)):
            out.add(id(node.body[0].value))
    return out


def test_no_second_list_of_models_in_the_package():
    """No tuple, list, set or dict of two or more model names, and no string naming two of them
    side by side (a help text, a message), outside the table; docstrings are prose and may."""
    hits = []
    for path in sorted(PKG.rglob("*.py")):
        rel = path.relative_to(PKG).as_posix()
        if rel == "train/catalog.py":
            continue
        tree = ast.parse(path.read_text())
        docs = _docstrings(tree)
        for node in ast.walk(tree):
            elts = None
            if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
                elts = node.elts
            elif isinstance(node, ast.Dict):
                elts = [k for k in node.keys if k is not None]
            if elts is not None:
                got = {e.value for e in elts if isinstance(e, ast.Constant) and e.value in NAMES}
                if len(got) >= 2:
                    hits.append(f"{rel}:{node.lineno} {sorted(got)}")
            if (isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docs
                    and LISTED.search(node.value)):
                hits.append(f"{rel}:{node.lineno} {node.value[:60]!r}")
    assert not hits, hits
