"""Pure tier: assembling one BPF source text from an entry file and its headers."""

from pathlib import Path

from ctl.dataplane.source import BPF_DIR, expand_includes


def test_local_headers_are_inlined_once_with_line_markers():
    files = {
        Path("/x/main.c"): '#include "lib/a.h"\n#include "lib/b.h"\nint main;\n',
        Path("/x/lib/a.h"): '#include "b.h"\nint a;\n',
        Path("/x/lib/b.h"): "#include <linux/bpf.h>\nint b;\n",
    }
    text = expand_includes(Path("/x/main.c"), read=lambda p: files[p])
    assert text.count("int b;") == 1
    assert text.index("int b;") < text.index("int a;") < text.index("int main;")
    assert "#include <linux/bpf.h>" in text
    assert '#line 3 "/x/main.c"' in text  # back in main.c after lib/b.h (skipped: seen)


def test_the_real_entry_programs_expand_to_self_contained_text():
    for entry in ("xdp_lb.c", "tc_lb.c"):
        text = expand_includes(BPF_DIR / entry)
        assert '#include "' not in text
        assert "lb_process" in text
