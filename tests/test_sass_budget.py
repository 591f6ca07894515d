"""tools/sass_budget.py's path counting, on a hand-written SASS loop whose count is known:
the Philox loop is found, a launch-uniform branch is a choice between variants (min / max),
a per-thread branch is issued on both sides, and the branch between the vector store and
the lane-by-lane stores is taken towards the vector store. (CI also runs the tool on the
built extension, in .ci/compile_cuda.sh.)"""
import importlib.util
import os
import shutil

import pytest

from conftest import skip_module_outside_repository

pytestmark = pytest.mark.repository
skip_module_outside_repository()
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
spec = importlib.util.spec_from_file_location("sass_budget", os.path.join(ROOT, "tools", "sass_budget.py"))
sass_budget = importlib.util.module_from_spec(spec)
spec.loader.exec_module(sass_budget)

NAME = ("_ZN4nspl50_GLOBAL__N__ba74a779_12_fill_cuda_cu_a4e14c3b_671722fill_contiguous_kernelIffNS_"
        "15PowerLawSamplerIfEEEEvPT_llbT1_NS0_12LaunchStreamE")
LOOP = """
        /*0000*/                   LDC R1, c[0x0][0x28] ;
        /*0010*/                   S2R R0, SR_TID.X ;
        /*0020*/                   LDC R2, c[0x0][0x210] ;
        /*0030*/                   IMAD.WIDE.U32 R4, R0, -0x2daee0ad, RZ ;
        /*0040*/                   ISETP.NE.AND P0, PT, R2, RZ, PT ;
        /*0050*/              @!P0 BRA 0x80 ;
        /*0060*/                   FADD R6, R4, 1 ;
        /*0070*/                   FADD R6, R6, 1 ;
        /*0080*/                   ISETP.GT.AND P1, PT, R4, RZ, PT ;
        /*0090*/               @P1 BRA 0xc0 ;
        /*00a0*/                   FMUL R7, R4, 2 ;
        /*00b0*/                   BRA 0xd0 ;
        /*00c0*/                   FMUL R7, R4, 3 ;
        /*00d0*/                   ISETP.EQ.AND P2, PT, R5, RZ, PT ;
        /*00e0*/               @P2 BRA 0x110 ;
        /*00f0*/                   STG.E desc[UR4][R8.64], R7 ;
        /*0100*/                   BRA 0x120 ;
        /*0110*/                   STG.E.128 desc[UR4][R8.64], R4 ;
        /*0120*/                   IADD3 R0, R0, 0x100, RZ ;
        /*0130*/                   ISETP.GE.AND P3, PT, R0, 0x1000, PT ;
        /*0140*/              @!P3 BRA 0x30 ;
        /*0150*/                   EXIT ;
        /*0160*/                   BRA 0x160 ;
"""


@pytest.mark.skipif(shutil.which("c++filt") is None, reason="needs c++filt")
def test_counts_the_hot_loop_of_a_known_kernel():
    (row,) = sass_budget.analyse(f"\t\tFunction : {NAME}\n{LOOP}")
    assert (row["kernel"], row["dtype"], row["sampler"]) == ("contiguous", "float32", "power_law")
    # Per trip: 3 (header) + 0 or 2 (uniform choice) + 2 + 2 + 1 (both divergent sides)
    # + 2 + 1 (the vector store; the lane stores are not on the whole-block path) + 3.
    assert (row["instructions_min"], row["instructions_max"]) == (14, 16)
    h200 = sass_budget.HARDWARE["H200 SXM"]
    rate = 132 * 4 * 1.98e9 * 32 * 16 / 14 / 1e12
    assert row["estimate"]["H200 SXM"]["min"]["write_tb_s"] == pytest.approx(rate, rel=1e-3)
    assert row["estimate"]["H200 SXM"]["min"]["share_of_hbm"] == min(1.0, round(rate / h200["hbm_tb_s"], 3))


@pytest.mark.skipif(shutil.which("c++filt") is None, reason="needs c++filt")
def test_budget_check_fails_over_budget_only():
    (row,) = sass_budget.analyse(f"\t\tFunction : {NAME}\n{LOOP}")
    key = "contiguous/float32/power_law"
    assert sass_budget.check([row], {key: {"min": 14, "max": 16}}) == []
    (problem,) = sass_budget.check([row], {key: {"min": 14, "max": 15}})
    assert "16 instructions per block (max path) over its budget of 15" in problem
    assert "no recorded budget" in sass_budget.check([row], {})[0]


def test_labels_name_the_power_law_form_and_the_capture_instantiation():
    name = ("void nspl::(anonymous namespace)::fill_contiguous_kernel<float, float, "
            "nspl::PowerLawSampler<float, (nspl::PowerLawForm)2>, true>(float*, long, long, bool, "
            "nspl::PowerLawSampler<float, (nspl::PowerLawForm)2>, nspl::LaunchStream)")
    assert sass_budget.describe(name) == ("contiguous (capture)", "float32", "power_law:alpha<1")
    name = name.replace("true>", "false>").replace("PowerLawSampler<float, (nspl::PowerLawForm)2>", "LogUniformSampler<float>")
    assert sass_budget.describe(name) == ("contiguous", "float32", "log_uniform")


def test_labels_name_the_bulk_kernel_with_a_key_per_tensor():
    name = ("void nspl::(anonymous namespace)::nspl_many_kernel<c10::BFloat16, float, "
            "nspl::LogUniformSampler<float>, {}, {}>(nspl::(anonymous namespace)::BulkTable<"
            "nspl::LogUniformSampler<float> >, nspl::LaunchStream)")
    assert sass_budget.describe(name.format("true", "false")) == ("bulk (key per tensor)", "bfloat16", "log_uniform")
    assert sass_budget.describe(name.format("false", "true")) == ("bulk (capture)", "bfloat16", "log_uniform")
    assert sass_budget.describe(name.format("false", "false")) == ("bulk", "bfloat16", "log_uniform")


@pytest.mark.skipif(shutil.which("c++filt") is None, reason="needs c++filt")
def test_a_label_found_twice_or_a_budget_without_its_kernel_fails_the_check():
    # The kernels are split over translation units: a kernel instantiated in two of them
    # would be counted twice under one label, and a removed kernel would keep a stale budget.
    (row,) = sass_budget.analyse(f"\t\tFunction : {NAME}\n{LOOP}")
    key = "contiguous/float32/power_law"
    problems = sass_budget.check([row, row], {key: {"min": 14, "max": 16}})
    assert problems == [f"{key}: 2 kernels have this label (one instantiated in two translation units?)"]
    (problem,) = sass_budget.check([row], {key: {"min": 14, "max": 16}, "bulk/float32/uniform": {"min": 1, "max": 1}})
    assert problem.startswith("bulk/float32/uniform: recorded budget of a kernel that no longer exists")


RESOURCE_USAGE = f"""
Resource usage:
 Common:
  GLOBAL:28 CONSTANT[4]:224
 Function {NAME}:
  REG:31 STACK:0 SHARED:0 LOCAL:0 CONSTANT[0]:33232 TEXTURE:0 SURFACE:0 SAMPLER:0
 Function {NAME.replace("Iff", "Idd")}:
  REG:40 STACK:{{stack}} SHARED:0 LOCAL:{{local}} CONSTANT[0]:1000 TEXTURE:0 SURFACE:0 SAMPLER:0
 Function _Z15unrelated_kernelPf:
  REG:8 STACK:32 SHARED:0 LOCAL:32 CONSTANT[0]:360 TEXTURE:0 SURFACE:0 SAMPLER:0
"""


def test_resource_usage_is_parsed_per_function():
    rows = sass_budget.resource_usage(RESOURCE_USAGE.format(stack=0, local=0))
    assert [r["function"] for r in rows] == [NAME, NAME.replace("Iff", "Idd"), "_Z15unrelated_kernelPf"]
    assert rows[0]["REG"] == 31 and rows[0]["CONSTANT[0]"] == 33232 and rows[1]["LOCAL"] == 0


@pytest.mark.skipif(shutil.which("c++filt") is None, reason="needs c++filt")
def test_resource_check_fails_on_stack_or_local_memory_of_our_kernels_only():
    assert sass_budget.check_resources(sass_budget.resource_usage(RESOURCE_USAGE.format(stack=0, local=0))) == []
    problems = sass_budget.check_resources(sass_budget.resource_usage(RESOURCE_USAGE.format(stack=16, local=24)))
    double = NAME.replace("Iff", "Idd")
    assert problems == [f"contiguous/float64/power_law: STACK 16 bytes ({double})",
                        f"contiguous/float64/power_law: LOCAL 24 bytes ({double})"]
    # Output that holds none of the kernels is a failure, not a pass.
    assert sass_budget.check_resources(sass_budget.resource_usage("Resource usage:\n")) == [
        "no nspl_filler kernels in the resource usage"]
