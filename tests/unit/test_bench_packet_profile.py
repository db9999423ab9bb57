"""bench.packet_profile's attribution of perf samples, on perf script's own text format."""

from bench.packet_profile import leaf_functions

SCRIPT = """\
\tffffffff81234567 bpf_lru_pop_free+0x37
\tffffffff81234000 htab_lru_map_update_elem+0x120
\tffffffffc0001234 bpf_prog_a4c3b02491495fc9_xdp_lb+0x5e1
\tffffffffc0000100 bpf_prog_9b038db6017955de_xdp_replay+0x80
\tffffffff81000000 bpf_test_run+0x100

\tffffffffc0001299 bpf_prog_a4c3b02491495fc9_xdp_lb+0x64a
\tffffffff81000000 bpf_test_run+0x100

\tffffffff81234567 bpf_lru_pop_free+0x40
\tffffffffc0001234 bpf_prog_a4c3b02491495fc9_xdp_lb+0x5e1

\tffffffff81999999 bpf_xdp_store_bytes+0x10
\tffffffffc0000100 bpf_prog_9b038db6017955de_xdp_replay+0x80
\tffffffff81000000 bpf_test_run+0x100

\t7f0000001000 _PyEval_EvalFrameDefault+0x10
"""


def test_samples_count_for_their_leaf_only_when_the_program_is_in_the_chain():
    assert leaf_functions(SCRIPT, "xdp_lb") == {
        "bpf_lru_pop_free": 2, "(the program's own code) xdp_lb": 1}


def test_another_program_is_not_counted():
    assert leaf_functions(SCRIPT, "tc_ingress") == {}
