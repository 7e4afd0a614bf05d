"""fusegen.bench.cycles: a hand-written QEMU block trace, its histogram and estimated cycles."""

import pytest

from fusegen.bench.cycles import CycleError, estimate, parse_trace

# Three blocks: the entry (0x100) runs a loop block (0x110) twice, the first time rewound after
# its first instruction (an I/O recompile), then returns to the caller at 0x200.
TRACE = """\
----------------
IN: fw_model_run
0x00000100:  b510       push     {r4, lr}
0x00000102:  ecb2 4a04  vldmia   r2!, {s8, s9, s10, s11}
0x00000106:  f000 b803  b.w      #0x110

Trace 0: 0x7f00 [00000000/00000100/00000110/ff020200] fw_model_run
----------------
IN: fg_loop
0x00000110:  ee24 6a06  vmul.f32 s12, s8, s12
0x00000114:  ee00 7a87  vmla.f32 s14, s1, s14
0x00000118:  fb29 bb01  smlad    fp, sb, r1, fp
0x0000011c:  6801       ldr      r1, [r0]
0x0000011e:  3b01       subs     r3, #1
0x00000120:  d1f6       bne      #0x110

Trace 0: 0x7f40 [00000000/00000110/00000110/ff020200] fg_loop
cpu_io_recompile: rewound execution of TB to 00000114
Trace 0: 0x7f40 [00000000/00000110/00000110/ff020200] fg_loop
----------------
IN: fg_tail
0x00000122:  bd10       pop      {r4, pc}

Trace 0: 0x7f80 [00000000/00000122/00000110/ff020200] fg_tail
----------------
IN: fw_server_poll
0x00000200:  2000       movs     r0, #0

Trace 0: 0x7fc0 [00000000/00000200/00000110/ff020200] fw_server_poll
"""


def test_histogram_and_cycles_of_a_hand_trace():
    est = estimate(parse_trace(TRACE), entry=0x100, ret=0x200)
    # push 1+2, vldmia 1+4, b.w taken 3 | vmul 1 (rewound) | vmul 1, vmla 3, smlad 1, ldr 2,
    # subs 1, bne not taken (the next block is 0x122, the fall-through) 1 | pop {r4, pc} 1+2+P=5
    assert est.instructions == 3 + 1 + 6 + 1
    assert est.cycles == (3 + 5 + 3) + 1 + (1 + 3 + 1 + 2 + 1 + 1) + 5
    assert est.histogram["fp"] == 2 and est.histogram["fp_mac"] == 1
    assert est.histogram["branch_taken"] == 1 and est.histogram["branch_not_taken"] == 1
    assert est.histogram["fp_load_multiple"] == 1 and est.class_cycles["fp_load_multiple"] == 5
    assert est.functions["fg_loop"] == 7


def test_a_window_that_never_returns_or_starts_is_an_error():
    executed = parse_trace(TRACE)
    with pytest.raises(CycleError, match="never returns"):
        estimate(executed, entry=0x100, ret=0x300)
    with pytest.raises(CycleError, match="enters 0x400 0 times"):
        estimate(executed, entry=0x400, ret=0x200)
