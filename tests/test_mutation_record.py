"""The mutation record (tests/mutation_record.py): scope, per-module counts, and an earlier
record's figures carried over for modules whose survivors alone were run again."""

import sys

import pytest
from conftest import REPO

sys.path.insert(0, str(REPO / "tests"))
import mutation_record as mr


@pytest.fixture(autouse=True)
def _no_mutmut(monkeypatch):
    monkeypatch.setattr(mr, "_diff", lambda name: "-    x = 1 / +    x = 2")


def test_scope_modules_and_carry_over():
    previous = {
        "by_module": {"pkg.a": {"killed": 8, "survived": 2, "equivalent": 0}},
        "survivors": [
            {"mutant": "pkg.a.x_f__mutmut_1", "file": "pkg/a.py", "mutation": "m1",
             "why": "not yet argued"},
            {"mutant": "pkg.a.x_f__mutmut_2", "file": "pkg/a.py", "mutation": "m2",
             "why": "equivalent: argued before"},
        ],
    }  # fmt: skip
    codes = {
        "pkg.a.x_f__mutmut_1": 1,  # an earlier survivor, killed by a new test
        "pkg.a.x_f__mutmut_2": 0,
        "pkg.a.x_g__mutmut_1": None,  # not run again: the earlier figures stand
        "pkg.b.xǁCǁm__mutmut_1": 1,
        "pkg.b.xǁCǁm__mutmut_2": 0,
        "pkg.c.x_h__mutmut_1": 0,  # outside the scope
    }
    rec = mr.record(codes, {}, ["pkg/a.py", "pkg/b.py"], scope=["pkg.a.*", "pkg.b.*"],
                    previous=previous)  # fmt: skip
    assert rec["carried_over"] == ["pkg.a"]
    assert rec["by_module"]["pkg.a"] == {"killed": 9, "survived": 1, "equivalent": 1}
    assert rec["by_module"]["pkg.b"]["killed"] == 1 and rec["by_module"]["pkg.b"]["survived"] == 1
    assert (rec["killed"], rec["survived"], rec["score"]) == (10, 2, 10 / 12)
    assert [r["mutant"] for r in rec["survivors"]] == ["pkg.a.x_f__mutmut_2",
                                                       "pkg.b.xǁCǁm__mutmut_2"]  # fmt: skip
    assert rec["survivors"][1]["file"] == "pkg/b.py"
    assert rec["survivors"][1]["why"] == "not yet argued"
    # a module run afresh beyond its earlier survivors keeps this run's figures only
    codes["pkg.a.x_g__mutmut_1"] = 1
    rec = mr.record(codes, {}, [], scope=["pkg.a.*"], previous=previous)
    assert rec["carried_over"] == [] and rec["by_module"]["pkg.a"]["killed"] == 2


def test_module_of_names_and_refuses_others():
    method = "tracer.models.gemnet.xǁRadialBasisǁforward__mutmut_3"
    assert mr.module_of(method) == "tracer.models.gemnet"
    assert mr.module_of("tracer.data.splits.x_set_sizes__mutmut_1") == "tracer.data.splits"
    with pytest.raises(ValueError, match="not a mutmut mutant name"):
        mr.module_of("tracer.data.splits")


def test_a_survivors_line_is_where_its_removed_line_stands(tmp_path):
    src = tmp_path / "m.py"
    src.write_text("def f():\n    a = 1\n    return a + 2\n")
    assert mr._line(str(src), "-    return a + 2 / +    return a - 2") == 3
    assert mr._line(str(src), "-    b = 0 / +    b = 1") is None
    assert mr._line(str(tmp_path / "absent.py"), "-    a = 1 / +    a = 2") is None
