"""Instructions per Philox block in the CUDA kernels' hot loops, read from their SASS, and
the share of an H100's or H200's HBM bandwidth that this instruction count allows: a
performance model that needs no GPU, and a CI check that the kernels stay within budget.

What is counted. For each kernel of nspl_filler._C (contiguous, strided and bulk; per
dtype and sampler) the sm_90 machine code is disassembled with cuobjdump. The hot loop is
the innermost loop whose body computes a Philox block (its multiplier 0xD2511F53 appears
as an immediate); one trip through it produces one block's elements. The count is the
number of warp instructions issued per trip on the path of a whole block (the one that
ends in the vector store), where:
- a branch on a warp-uniform predicate (computed from kernel parameters, constants and
  uniform registers only: a dataflow pass over the SASS decides) is a choice between
  variants, e.g. the power law's form, chosen once per launch: the report gives the
  cheapest and the costliest choice ("min" and "max"). For today's power-law sampler,
  min is alpha = 1 (the log-uniform form), max any other alpha;
- a branch on a per-thread predicate inside the sampler is assumed divergent: the warp
  issues both sides (the worst case, and the usual one when the sides depend on random
  data);
- a branch that decides between the vector store and the lane-by-lane stores (a partial
  or misaligned block) is taken towards the vector store;
- subroutine calls add their callee's costliest path; a loop nested in the hot loop
  (none in the power law or the uniform) is counted as one trip and flagged.

The estimate. A warp instruction carries one Philox block per thread, so with I
instructions per block and B bytes written per block, the kernel can write at most
    SMs × schedulers per SM × instructions per clock × clock × 32 threads × B / I
bytes per second; the share of HBM bandwidth it can sustain is that over the card's HBM
bandwidth, capped at 1. The numbers assumed (HARDWARE below) come from NVIDIA's H100 and
H200 datasheets and the Hopper architecture whitepaper. It is an upper bound on the
instruction side: it assumes one instruction per clock on every scheduler, whereas
integer multiplies and float64 operations issue at half rate on Hopper, and it ignores
the memory system. Labelled an estimate wherever it is reported.

    python tools/sass_budget.py --so path/to/nspl_filler/lib/libnspl_filler.so   # a built library
    python tools/sass_budget.py                                   # compiles csrc/cuda/*.cu
    python tools/sass_budget.py --so ... --check                  # CI: fail over budget
    python tools/sass_budget.py --so ... --update                 # re-record the budgets
    python tools/sass_budget.py --so ... --resources              # CI: no kernel uses local memory or stack

The kernels live in several translation units (one per dtype and op, csrc/cuda/*.cu); a
kernel's label (kernel/dtype/sampler) comes from its template arguments, not its unit, and
each label must come from exactly one kernel: one found twice (instantiated in two units) or
a budget whose kernel no longer exists fails the check.

--resources reads `cuobjdump --dump-resource-usage` and fails if any nspl_filler kernel has a
stack frame or local memory: the kernels keep their state in registers and read their large
arguments (the strided geometry, the bulk table) in place, as __grid_constant__ parameters; a
by-value parameter indexed at run time, or a spill, would otherwise go to local memory.
"""
from __future__ import annotations

import argparse
import datetime
import glob
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections import defaultdict

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUDGETS = os.path.join(ROOT, "tools", "sass_budgets.json")
# A kernel may exceed its recorded count by this share before the check fails: room for
# scheduling noise of a compiler update, not for a new operation per element.
TOLERANCE = 0.02

HARDWARE = {
    "H100 SXM5": {"sms": 132, "clock_ghz": 1.98, "hbm_tb_s": 3.35},
    "H200 SXM": {"sms": 132, "clock_ghz": 1.98, "hbm_tb_s": 4.8},
}
SCHEDULERS_PER_SM = 4  # Hopper: four SM sub-partitions, each issuing one warp instruction per clock
HARDWARE_SOURCE = ("NVIDIA H100 and H200 Tensor Core GPU datasheets (SMs, HBM bandwidth), NVIDIA "
                   "Hopper architecture whitepaper (4 schedulers per SM, 1 warp instruction per clock "
                   "each; 1,980 MHz maximum boost clock of the SXM parts)")

PHILOX_IMMEDIATES = ("-0x2daee0ad", "0xd2511f53")
DTYPES = {"c10::BFloat16": "bfloat16", "c10::Half": "float16", "float": "float32", "double": "float64"}
BYTES_PER_BLOCK = {"float32": 16, "float64": 16, "float16": 8, "bfloat16": 8}
VECTOR_STORE = {"float32": "STG.E.128", "float64": "STG.E.128", "float16": "STG.E.64", "bfloat16": "STG.E.64"}
KERNELS = {"fill_contiguous_kernel": "contiguous", "fill_strided_kernel": "strided", "nspl_many_kernel": "bulk"}
# PowerLawForm of kernel_args.h, by value.
POWER_LAW_FORMS = {0: "alpha>1", 1: "alpha>1,tiny_exp_k", 2: "alpha<1"}
# What min and max stand for where the launch-uniform choice is not the sampler's.
KERNEL_NOTES = {"strided": "min / max: the fewest / most dims (1 / 25) besides the row; rows of stride 1"}


# ---------------------------------------------------------------------------------------
# Tools
# ---------------------------------------------------------------------------------------
def find_tool(name: str) -> str:
    """A CUDA binary utility: $CUDA_HOME/bin, PATH, or the copy that triton (a dependency
    of torch's CUDA wheels) ships."""
    candidates = []
    if os.environ.get("CUDA_HOME"):
        candidates.append(os.path.join(os.environ["CUDA_HOME"], "bin", name))
    candidates.append(shutil.which(name) or "")
    try:
        import triton  # noqa: PLC0415

        candidates.append(os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", name))
    except ImportError:
        pass
    for path in candidates:
        if path and os.access(path, os.X_OK):
            return path
    raise SystemExit(f"sass_budget: {name} not found (set CUDA_HOME, or install torch's CUDA wheel with triton)")


def compile_cubins(workdir: str) -> list[str]:
    """csrc/cuda/*.cu for sm_90 with the flags setup.py gives nvcc."""
    import torch.utils.cpp_extension as ext  # noqa: PLC0415

    nvcc = find_tool("nvcc")
    site = os.path.dirname(os.path.dirname(ext.__file__))
    includes = ext.include_paths("cuda") + sorted(glob.glob(os.path.join(os.path.dirname(site), "nvidia", "*", "include")))
    outputs = []
    for source in sorted(glob.glob(os.path.join(ROOT, "csrc", "cuda", "*.cu"))):
        out = os.path.join(workdir, os.path.basename(source) + ".cubin")
        command = [nvcc, "-cubin", "-gencode", "arch=compute_90,code=sm_90", "-std=c++20", "-O3", "-lineinfo",
                   "--fmad=false", "-DNSPL_WITH_CUDA", "-DTORCH_EXTENSION_NAME=_C", *ext.COMMON_NVCC_FLAGS,
                   *[f"-I{d}" for d in includes], source, "-o", out]
        subprocess.run(command, check=True)
        outputs.append(out)
    return outputs


def disassemble(path: str) -> str:
    command = [find_tool("cuobjdump"), "-sass"]
    if not path.endswith(".cubin"):
        command += ["-arch", "sm_90"]
    return subprocess.run(command + [path], check=True, capture_output=True, text=True).stdout


def demangle(names: list[str]) -> list[str]:
    filt = shutil.which("c++filt")
    if filt is None:
        return names
    out = subprocess.run([filt], input="\n".join(names), capture_output=True, text=True, check=True).stdout
    return out.splitlines()


# ---------------------------------------------------------------------------------------
# SASS
# ---------------------------------------------------------------------------------------
LINE = re.compile(r"^\s*/\*([0-9a-f]{4,})\*/\s+(.*?)\s*;")
REGISTER = re.compile(r"(?<![\w.])(U?R\d+|U?P[0-6T]|URZ|RZ|UPT)(?:\.(64|128|reuse))*")
NO_DEF = {"ST", "STG", "STS", "STL", "RED", "REDG", "BRA", "EXIT", "BSSY", "BSYNC", "CALL", "RET", "NOP", "BAR",
          "WARPSYNC", "MEMBAR", "DEPBAR", "YIELD", "BREAK", "ERRBAR", "CCTL", "FENCE", "BPT", "JMP", "BRX"}
LOADS = {"LD", "LDG", "LDS", "LDL", "ATOM", "ATOMG", "ATOMS", "LDSM", "LDGSTS"}


class Instruction:
    def __init__(self, address: int, text: str):
        self.address = address
        self.text = text
        guard = re.match(r"@(!?)(U?P[0-6T])\s+", text)
        self.guard = guard.group(2) if guard else None
        body = text[guard.end():] if guard else text
        opcode, _, operands = body.partition(" ")
        self.opcode = opcode
        parts = opcode.split(".")
        self.base, self.mods = parts[0], parts[1:]
        self.operands = split_operands(operands)

    @property
    def is_branch(self):
        return self.base in ("BRA", "JMP")

    def branch_target(self):
        match = re.search(r"0x([0-9a-f]+)\s*$", self.operands[-1]) if self.operands else None
        return int(match.group(1), 16) if match else None

    def branch_condition(self):
        """Predicates the branch depends on: its guard and a condition operand."""
        preds = [self.guard] if self.guard and self.guard not in ("PT", "UPT") else []
        preds += [t for op in self.operands[:-1] for t in registers(op) if t.lstrip("U").startswith("P") and t not in ("PT", "UPT")]
        return preds


def split_operands(text: str) -> list[str]:
    ops, depth, current = [], 0, ""
    for ch in text:
        if ch == "[":
            depth += 1
        elif ch == "]":
            depth -= 1
        if ch == "," and depth == 0:
            ops.append(current.strip())
            current = ""
        else:
            current += ch
    if current.strip():
        ops.append(current.strip())
    return ops


def registers(operand: str) -> list[str]:
    return [m.group(1) for m in REGISTER.finditer(operand)]


def is_uniform_name(reg: str) -> bool:
    return reg.startswith("U") or reg in ("RZ", "PT")


def defs_and_uses(ins: Instruction):
    """(defined registers, used registers) of an instruction, register pairs expanded."""
    ops = ins.operands
    if ins.base in NO_DEF or not ops:
        return [], [r for op in ops for r in registers(op)] + ([ins.guard] if ins.guard else [])
    if ins.base.endswith("SETP") or ins.base in ("PLOP3", "UPLOP3"):
        n_def = 2
    else:
        n_def = 1
        if "X" not in ins.mods:
            while n_def < len(ops) and re.fullmatch(r"!?U?P[0-6T]", ops[n_def]):
                n_def += 1
    defs = [r for op in ops[:n_def] for r in registers(op)]
    width = 1
    if "128" in ins.mods:
        width = 4
    elif "64" in ins.mods or "WIDE" in ins.mods or (ins.base.startswith("D") and not ins.base.endswith("SETP")):
        width = 2
    elif ins.base in ("F2F", "I2F", "F2I") and ins.mods and ins.mods[0] in ("F64", "S64", "U64"):
        width = 2
    expanded = []
    for r in defs:
        expanded.append(r)
        m = re.fullmatch(r"R(\d+)", r)
        if m and width > 1:
            expanded += [f"R{int(m.group(1)) + k}" for k in range(1, width)]
    uses = []
    for op in ops[n_def:]:
        for m in REGISTER.finditer(op):
            uses.append(m.group(1))
            r = re.fullmatch(r"R(\d+)", m.group(1))
            if r and (m.group(2) in ("64", "128") or ins.base.startswith("D")):
                uses.append(f"R{int(r.group(1)) + 1}")
    if ins.guard:
        uses.append(ins.guard)
    return expanded, uses


class Function:
    def __init__(self, name: str, lines: list[tuple[int, str]]):
        self.name = name
        self.instructions = [Instruction(a, t) for a, t in lines]
        self.by_address = {ins.address: k for k, ins in enumerate(self.instructions)}
        self._blocks()
        self._uniformity()

    def _blocks(self):
        starts = {0}
        for k, ins in enumerate(self.instructions):
            if ins.is_branch or ins.base in ("EXIT", "RET", "CALL"):
                if ins.is_branch and ins.branch_target() in self.by_address:
                    starts.add(self.by_address[ins.branch_target()])
                if ins.base != "CALL" and k + 1 < len(self.instructions):
                    starts.add(k + 1)
            if ins.base == "CALL" and ins.branch_target() in self.by_address:
                starts.add(self.by_address[ins.branch_target()])
        starts = sorted(starts)
        self.blocks = []  # (first, last) instruction indices
        for j, s in enumerate(starts):
            end = starts[j + 1] if j + 1 < len(starts) else len(self.instructions)
            self.blocks.append((s, end))
        self.block_of = {}
        for b, (s, e) in enumerate(self.blocks):
            for k in range(s, e):
                self.block_of[k] = b
        self.succ = defaultdict(list)
        for b, (s, e) in enumerate(self.blocks):
            last = self.instructions[e - 1]
            unconditional = last.guard in (None, "PT") and not (last.is_branch and last.branch_condition())
            if last.is_branch and last.branch_target() in self.by_address:
                self.succ[b].append(self.block_of[self.by_address[last.branch_target()]])
                if not unconditional and e < len(self.instructions):
                    self.succ[b].append(self.block_of[e])
            elif last.base in ("EXIT", "RET"):
                if not unconditional and e < len(self.instructions):
                    self.succ[b].append(self.block_of[e])
            elif e < len(self.instructions):
                self.succ[b].append(self.block_of[e])
        self.pred = defaultdict(list)
        for b, ss in self.succ.items():
            for s in ss:
                self.pred[s].append(b)

    def _uniformity(self):
        """Registers that may differ between the threads of a warp, at each instruction."""
        varying_in = {b: set() for b in range(len(self.blocks))}
        self.varying_at = {}
        changed = True
        while changed:
            changed = False
            for b, (s, e) in enumerate(self.blocks):
                state = set(varying_in[b])
                for k in range(s, e):
                    ins = self.instructions[k]
                    self.varying_at[k] = frozenset(state)
                    defs, uses = defs_and_uses(ins)
                    if ins.base == "S2R":
                        varying = not any("CTAID" in op or "NCTAID" in op for op in ins.operands)
                    elif ins.base in ("VOTE", "VOTEU", "S2UR", "R2UR"):
                        varying = False
                    elif ins.base in ("SHFL",):
                        varying = True
                    else:
                        varying = any(u in state for u in uses if not is_uniform_name(u))
                    guard_varying = ins.guard in state if ins.guard else False
                    for d in defs:
                        if is_uniform_name(d):
                            continue
                        if varying or guard_varying:
                            state.add(d)
                        elif not ins.guard:
                            state.discard(d)
                for t in self.succ[b]:
                    if not state <= varying_in[t]:
                        varying_in[t] |= state
                        changed = True

    def block_length(self, b):
        s, e = self.blocks[b]
        return e - s

    def block_text(self, b):
        s, e = self.blocks[b]
        return [self.instructions[k] for k in range(s, e)]

    def branch_is_uniform(self, b):
        s, e = self.blocks[b]
        last = self.instructions[e - 1]
        state = self.varying_at[e - 1]
        return not any(p in state for p in last.branch_condition() if not is_uniform_name(p))


# ---------------------------------------------------------------------------------------
# Paths
# ---------------------------------------------------------------------------------------
END = -1


class PathCost:
    """Cheapest and costliest issue counts from a block to the end of a region (a DAG
    whose edges are given by `succ`; END closes it), with divergent branches issuing both
    sides up to their reconvergence point."""

    def __init__(self, fn: Function, nodes: set, succ: dict):
        self.fn, self.nodes, self.succ = fn, nodes, succ
        self.memo = {}
        self.call_cost = {}
        self.flags = set()
        self._postdominators()

    def _postdominators(self):
        order = self._topological()
        pdom = {END: {END}}
        for n in reversed(order):
            sets = [pdom[s] for s in self.succ[n]]
            pdom[n] = {n} | (set.intersection(*sets) if sets else set())
        self.pdom = pdom
        self.ipdom = {}
        for n in order:
            candidates = pdom[n] - {n}
            self.ipdom[n] = max(candidates, key=lambda c: len(pdom[c]))

    def _topological(self):
        seen, order = set(), []

        def visit(n):
            if n == END or n in seen:
                return
            seen.add(n)
            for s in self.succ[n]:
                visit(s)
            order.append(n)

        for n in sorted(self.nodes):
            visit(n)
        order.reverse()
        return order

    def length(self, b):
        total = 0
        for ins in self.fn.block_text(b):
            total += 1
            if ins.base == "CALL":
                target = ins.branch_target()
                if target not in self.call_cost:
                    self.call_cost[target] = subroutine_cost(self.fn, target, self.flags)
                total += self.call_cost[target]
        return total

    def cost(self, n, target=END):
        """(min, max) instructions from the start of n up to (not including) target."""
        if n == target or n == END:
            return (0, 0)
        key = (n, target)
        if key in self.memo:
            return self.memo[key]
        here = self.length(n)
        succ = self.succ[n]
        if len(succ) == 1:
            rest = self.cost(succ[0], target)
            result = (here + rest[0], here + rest[1])
        elif self.fn.branch_is_uniform(n):
            options = [self.cost(s, target) for s in succ]
            result = (here + min(o[0] for o in options), here + max(o[1] for o in options))
        else:
            r = self.ipdom[n]
            sides = [self.cost(s, r) for s in succ]
            rest = self.cost(r, target) if r != END else (0, 0)
            result = (here + sum(s[0] for s in sides) + rest[0], here + sum(s[1] for s in sides) + rest[1])
        self.memo[key] = result
        return result


def reachable(start, edges):
    seen, stack = set(), list(start)
    while stack:
        n = stack.pop()
        if n in seen or n == END:
            continue
        seen.add(n)
        stack.extend(edges[n])
    return seen


def subroutine_cost(fn: Function, address: int, flags: set) -> int:
    """Costliest path of a subroutine from its entry to a RET."""
    entry = fn.block_of[fn.by_address[address]]
    succ = defaultdict(list)
    nodes = reachable([entry], fn.succ)
    for b in nodes:
        last = fn.block_text(b)[-1]
        if last.base == "RET":
            succ[b] = [END]
            continue
        for s in fn.succ[b]:
            if fn.blocks[s][0] <= fn.blocks[b][0]:
                flags.add("loop in subroutine, counted once")
            else:
                succ[b].append(s)
    return PathCost(fn, nodes, succ).cost(entry)[1]


def hot_loop_cost(fn: Function, vector_store: str):
    """(min, max, flags) instructions per trip of the innermost loop holding a Philox block."""
    loops = defaultdict(set)  # header -> latches
    for b in range(len(fn.blocks)):
        for s in fn.succ[b]:
            if fn.blocks[s][0] <= fn.blocks[b][0]:
                loops[s].add(b)
    candidates = []
    for header, latches in loops.items():
        body = {header}
        stack = list(latches)
        while stack:
            n = stack.pop()
            if n in body:
                continue
            body.add(n)
            stack.extend(fn.pred[n])
        if any(imm in ins.text for b in body for ins in fn.block_text(b) for imm in PHILOX_IMMEDIATES):
            candidates.append((len(body), header, latches, body))
    if not candidates:
        raise ValueError(f"no loop computing a Philox block in {fn.name}")
    _, header, latches, body = min(candidates)
    flags = set()
    succ = defaultdict(list)
    for b in body:
        for s in fn.succ[b]:
            if s == header:
                succ[b].append(END)
            elif s in body:
                if fn.blocks[s][0] <= fn.blocks[b][0]:
                    flags.add("inner loop counted as one trip")
                else:
                    succ[b].append(s)
    # Keep the path of a whole block: the blocks on some header -> vector store -> end path.
    stores = {b for b in body if any(ins.opcode == vector_store for ins in fn.block_text(b))}
    if stores:
        preds = defaultdict(list)
        for b, ss in succ.items():
            for s in ss:
                preds[s].append(b)
        from_header = reachable([header], succ)
        to_end = reachable(preds[END], preds)
        before = reachable(list(stores), preds)
        after = reachable(list(stores), succ)
        keep = from_header & to_end & (before | after)
        succ = defaultdict(list, {b: [s for s in succ[b] if s == END or s in keep] for b in keep})
        body = keep
    else:
        flags.add("no vector store: every store path counted")
    paths = PathCost(fn, body, succ)
    low, high = paths.cost(header)
    return low, high, sorted(flags | paths.flags), (body, succ)


def explain(fn: Function, region) -> str:
    """The hot loop's blocks on the whole-block path, with how each branch is counted."""
    body, succ = region
    lines = []
    for b in sorted(body, key=lambda n: fn.blocks[n][0]):
        block = fn.block_text(b)
        kind = ""
        if len(succ[b]) > 1:
            kind = "uniform branch: a choice" if fn.branch_is_uniform(b) else "divergent branch: both sides"
        targets = ", ".join("end of trip" if s == END else f"{fn.instructions[fn.blocks[s][0]].address:#06x}"
                            for s in succ[b])
        lines.append(f"-- block at {block[0].address:#06x}: {len(block)} instructions -> {targets} {kind}")
        lines += [f"   {ins.address:#06x}  {ins.text}" for ins in block]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------
def parse_functions(sass: str) -> list[tuple[str, list[tuple[int, str]]]]:
    functions, name, lines = [], None, []
    for line in sass.splitlines():
        match = re.search(r"Function : (\S+)", line)
        if match:
            if name:
                functions.append((name, lines))
            name, lines = match.group(1), []
            continue
        m = LINE.match(line)
        if m and name:
            lines.append((int(m.group(1), 16), m.group(2)))
    if name:
        functions.append((name, lines))
    return functions


def describe(demangled: str):
    kind = next((v for k, v in KERNELS.items() if k in demangled), None)
    if kind is None:
        return None
    args = demangled[demangled.index("<") + 1:]
    dtype = next((v for k, v in DTYPES.items() if args.startswith(k + ",") or args.startswith(k + " ")), None)
    # The sampler's type name, snake case without "Sampler": power_law, uniform, normal, and
    # whatever types nspl_math.h adds; a power law's form (kernel_args.h) after a colon.
    match = re.search(r"nspl::(\w+)Sampler<", args)
    sampler = re.sub(r"(?<!^)(?=[A-Z])", "_", match.group(1)).lower() if match else "other"
    form = re.search(r"PowerLawForm\)(\d+)>", args)
    if form:
        sampler += ":" + POWER_LAW_FORMS.get(int(form.group(1)), form.group(1))
    # The kernels' last template argument: whether the key's round keys are computed in the
    # kernel (graph capture, the key known only at replay) or come with the launch; the bulk
    # kernel's one before it: whether each tensor brings its own key (streams by name).
    flags = template_arguments(args)
    if kind == "bulk" and flags[-2:-1] == ["true"]:
        kind += " (key per tensor)"
    if flags[-1:] == ["true"]:
        kind += " (capture)"
    return kind, dtype, sampler


def template_arguments(args: str) -> list[str]:
    """The top-level template arguments of a demangled name, given the text after its '<'."""
    out, depth, current = [], 0, ""
    for ch in args:
        if ch in "<(":
            depth += 1
        elif ch in ">)":
            if depth == 0:
                break
            depth -= 1
        if ch == "," and depth == 0:
            out.append(current.strip())
            current = ""
        else:
            current += ch
    return out + [current.strip()]


def analyse(sass: str) -> list[dict]:
    functions = parse_functions(sass)
    names = demangle([name for name, _ in functions])
    rows = []
    for (mangled, lines), demangled in zip(functions, names):
        what = describe(demangled)
        if what is None or what[1] is None:
            continue
        kind, dtype, sampler = what
        fn = Function(mangled, lines)
        low, high, flags, region = hot_loop_cost(fn, VECTOR_STORE[dtype])
        if kind.split(" ")[0] in KERNEL_NOTES:
            flags = [KERNEL_NOTES[kind.split(" ")[0]], *flags]
        rows.append({"kernel": kind, "dtype": dtype, "sampler": sampler, "instructions_min": low,
                     "instructions_max": high, "bytes_per_block": BYTES_PER_BLOCK[dtype], "flags": flags,
                     "explain": lambda fn=fn, region=region: explain(fn, region),
                     "estimate": {gpu: {"min": share(low, dtype, hw), "max": share(high, dtype, hw)}
                                  for gpu, hw in HARDWARE.items()}})
    order = {"contiguous": 0, "bulk": 1, "strided": 2}
    dorder = {"float32": 0, "bfloat16": 1, "float16": 2, "float64": 3}
    rows.sort(key=lambda r: (r["kernel"].endswith("(capture)"), order[r["kernel"].split(" ")[0]],
                             "(key per tensor)" in r["kernel"],
                             not r["sampler"].startswith(("log_uniform", "power_law")), r["sampler"],
                             dorder[r["dtype"]]))
    return rows


def write_rate_tb_s(instructions: int, dtype: str, hw: dict) -> float:
    issue = hw["sms"] * SCHEDULERS_PER_SM * hw["clock_ghz"] * 1e9  # warp instructions per second
    return issue * 32 * BYTES_PER_BLOCK[dtype] / instructions / 1e12


def share(instructions: int, dtype: str, hw: dict) -> dict:
    rate = write_rate_tb_s(instructions, dtype, hw)
    return {"write_tb_s": round(rate, 3), "share_of_hbm": round(min(1.0, rate / hw["hbm_tb_s"]), 3)}


def key(row: dict) -> str:
    return f"{row['kernel']}/{row['dtype']}/{row['sampler']}"


def markdown(rows: list[dict], source: str) -> str:
    gpus = list(HARDWARE)
    lines = [
        "# SASS budget of the CUDA kernels (an estimate, not a measurement)",
        "",
        f"sm_90 machine code of {source}, {datetime.date.today().isoformat()}, by `tools/sass_budget.py`. "
        "Instructions: warp instructions issued per trip of the hot loop (one Philox block per thread) on "
        "the path of a whole block; min and max are the cheapest and costliest launch-uniform choice (see "
        "the notes). Samplers: log_uniform is the power law at alpha = 1 (the default), power_law:form the "
        "other alphas, one kernel per form; kernels marked (capture) are the instantiations for CUDA-graph "
        "capture with a torch generator, which work out the key's round keys in the kernel; bulk (key per "
        "tensor) is the bulk kernel for calls with a key per tensor (streams by name), whose max is the trip "
        "on which a thread's tile moves to another tensor and works out its round keys (at most one trip in "
        "four). The share of HBM bandwidth is "
        "`min(1, SMs × 4 schedulers × 1 instruction/clock × clock × 32 × bytes per block / instructions "
        "/ HBM bandwidth)`, with "
        + "; ".join(f"{g}: {h['sms']} SMs, {h['clock_ghz']} GHz, {h['hbm_tb_s']} TB/s" for g, h in HARDWARE.items())
        + f" ({HARDWARE_SOURCE}). An upper bound on the instruction side: integer multiplies and float64 "
        "operations issue at half rate on Hopper.",
        "",
        "| kernel | dtype | sampler | instructions per block (min / max) | bytes per block | "
        + " | ".join(f"{g} share of HBM (min / max)" for g in gpus) + " | notes |",
        "|---|---|---|---:|---:|" + "---:|" * len(gpus) + "---|",
    ]
    for r in rows:
        cells = [f"{r['estimate'][g]['min']['share_of_hbm']:.0%} / {r['estimate'][g]['max']['share_of_hbm']:.0%}"
                 for g in gpus]
        lines.append(f"| {r['kernel']} | {r['dtype']} | {r['sampler']} | {r['instructions_min']} / "
                     f"{r['instructions_max']} | {r['bytes_per_block']} | " + " | ".join(cells) + f" | {'; '.join(r['flags'])} |")
    return "\n".join(lines) + "\n"


def check(rows: list[dict], budgets: dict) -> list[str]:
    problems = []
    seen = defaultdict(int)
    for r in rows:
        seen[key(r)] += 1
    problems += [f"{k}: {n} kernels have this label (one instantiated in two translation units?)"
                 for k, n in sorted(seen.items()) if n > 1]
    problems += [f"{k}: recorded budget of a kernel that no longer exists (re-record with --update)"
                 for k in sorted(budgets) if k not in seen]
    for r in rows:
        budget = budgets.get(key(r))
        if budget is None:
            problems.append(f"{key(r)}: no recorded budget (run with --update)")
            continue
        for end in ("min", "max"):
            got, allowed = r[f"instructions_{end}"], budget[end]
            if got > allowed * (1 + TOLERANCE):
                problems.append(f"{key(r)}: {got} instructions per block ({end} path) over its budget of {allowed}")
    return problems


RESOURCE_FUNCTION = re.compile(r"^\s*Function\s+(\S+?):?\s*$")
RESOURCE_FIELDS = re.compile(r"([A-Z_]+(?:\[\d+\])?):(\d+)")


def resource_usage(text: str) -> list[dict]:
    """Per function of `cuobjdump --dump-resource-usage` output: its mangled name and fields
    (REG, STACK, SHARED, LOCAL, CONSTANT[0], ...) as integers."""
    rows, name = [], None
    for line in text.splitlines():
        match = RESOURCE_FUNCTION.match(line)
        if match:
            name = match.group(1)
            continue
        fields = dict((k, int(v)) for k, v in RESOURCE_FIELDS.findall(line))
        if name is not None and "REG" in fields:
            rows.append({"function": name, **fields})
            name = None
    return rows


def check_resources(rows: list[dict]) -> list[str]:
    """Problems: nspl_filler kernels with a stack frame or local memory; none found at all."""
    names = demangle([r["function"] for r in rows])
    problems, kernels = [], 0
    for r, demangled in zip(rows, names):
        what = describe(demangled)
        if what is None:
            continue
        kernels += 1
        label = "/".join(str(part) for part in what)
        for field in ("STACK", "LOCAL"):
            if r.get(field, 0) > 0:
                problems.append(f"{label}: {field} {r[field]} bytes ({r['function']})")
    if kernels == 0:
        problems.append("no nspl_filler kernels in the resource usage")
    return problems


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--so", help="a built nspl_filler/lib/libnspl_filler.so with sm_90 code (default: compile csrc/cuda/*.cu)")
    parser.add_argument("--budgets", default=BUDGETS, help="recorded budgets (default tools/sass_budgets.json)")
    parser.add_argument("--check", action="store_true", help="exit 1 if a kernel exceeds its recorded budget")
    parser.add_argument("--update", action="store_true", help="record today's counts as the budgets")
    parser.add_argument("--json", help="write the table as JSON here")
    parser.add_argument("--markdown", help="write the table as markdown here")
    parser.add_argument("--explain", metavar="KERNEL/DTYPE/SAMPLER",
                        help="print the hot loop of one kernel (e.g. contiguous/float32/power_law), block by block")
    parser.add_argument("--resources", action="store_true",
                        help="only check that no kernel uses local memory or stack (cuobjdump --dump-resource-usage)")
    args = parser.parse_args(argv)

    if args.resources:
        with tempfile.TemporaryDirectory() as workdir:
            paths = [args.so] if args.so else compile_cubins(workdir)
            rows = []
            for path in paths:
                command = [find_tool("cuobjdump"), "--dump-resource-usage"]
                if not path.endswith(".cubin"):
                    command += ["-arch", "sm_90"]
                rows += resource_usage(subprocess.run(command + [path], check=True, capture_output=True,
                                                      text=True).stdout)
        problems = check_resources(rows)
        for p in problems:
            print(f"sass_budget: {p}", file=sys.stderr)
        if problems:
            return 1
        registers = sorted(r["REG"] for r in rows)
        print(f"sass_budget: {len(rows)} kernels, none with stack or local memory "
              f"(registers {registers[0]} to {registers[-1]})")
        return 0

    with tempfile.TemporaryDirectory() as workdir:
        paths = [args.so] if args.so else compile_cubins(workdir)
        sass = "\n".join(disassemble(p) for p in paths)
    rows = analyse(sass)
    if not rows:
        print("sass_budget: no nspl_filler kernels with sm_90 code found", file=sys.stderr)
        return 1
    if args.explain:
        matches = [r for r in rows if key(r) == args.explain]
        if not matches:
            print(f"sass_budget: no kernel {args.explain}; one of: {', '.join(key(r) for r in rows)}", file=sys.stderr)
            return 1
        print(matches[0]["explain"]())
        return 0
    for r in rows:
        del r["explain"]
    source = os.path.basename(args.so) if args.so else "csrc/cuda/*.cu"
    table = markdown(rows, source)
    print(table)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"estimate": True, "date": datetime.date.today().isoformat(), "source": source,
                       "hardware": HARDWARE, "schedulers_per_sm": SCHEDULERS_PER_SM, "hardware_source": HARDWARE_SOURCE,
                       "formula": "share = min(1, sms * schedulers * clock * 32 * bytes_per_block / instructions / hbm)",
                       "kernels": rows}, f, indent=1)
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(table)
    if args.update:
        budgets = {key(r): {"min": r["instructions_min"], "max": r["instructions_max"]} for r in rows}
        with open(args.budgets, "w") as f:
            json.dump(budgets, f, indent=1, sort_keys=True)
            f.write("\n")
        print(f"sass_budget: recorded {len(budgets)} budgets in {os.path.relpath(args.budgets, ROOT)}")
    if args.check:
        if not os.path.exists(args.budgets):
            print(f"sass_budget: no budgets recorded in {args.budgets}; run with --update", file=sys.stderr)
            return 1
        with open(args.budgets) as f:
            problems = check(rows, json.load(f))
        for p in problems:
            print(f"sass_budget: {p}", file=sys.stderr)
        if problems:
            return 1
        print(f"sass_budget: {len(rows)} kernels within their budgets (+{TOLERANCE:.0%})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
