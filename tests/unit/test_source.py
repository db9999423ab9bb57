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


def test_line_markers_can_name_paths_under_a_root():
    files = {Path("/x/main.c"): '#include "lib/a.h"\nint main;\n', Path("/x/lib/a.h"): "int a;\n"}
    text = expand_includes(Path("/x/main.c"), read=lambda p: files[p], names_under=Path("/x"))
    assert '#line 1 "lib/a.h"' in text and '#line 2 "main.c"' in text
    assert "/x/" not in text


def test_the_real_entry_programs_expand_to_self_contained_text():
    for entry in ("xdp_lb.c", "tc_lb.c"):
        text = expand_includes(BPF_DIR / entry)
        assert '#include "' not in text
        assert "lb_process" in text


def test_static_asserted_sizes_are_the_mirrors_sizes() -> None:
    """structs.h asserts each shared struct's size; abi.py mirrors them: both agree, and
    no struct of structs.h goes without an assert."""
    import ctypes
    import re

    from ctl.dataplane import abi

    text = (BPF_DIR / "lib" / "structs.h").read_text()
    declared = set(re.findall(r"^(?:struct|union) (\w+) \{", text, re.M))
    asserted = {name: int(size) for name, size in
                re.findall(r"_Static_assert\(sizeof\((?:struct|union) (\w+)\) == (\d+),", text)}
    assert set(asserted) == declared
    for name, size in asserted.items():
        mirror = getattr(abi, "".join(part.capitalize() for part in name.split("_")))
        assert ctypes.sizeof(mirror) == size, name
