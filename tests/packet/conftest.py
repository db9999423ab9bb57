import pytest

from lab.harness import PacketLab, missing_requirements


@pytest.fixture(scope="module")
def packet_lab():
    reason = missing_requirements()
    if reason:
        pytest.skip(reason)
    lab = PacketLab()
    try:
        yield lab
    finally:
        lab.close()


@pytest.fixture
def plab(packet_lab):
    """The module's lab with every map emptied."""
    packet_lab.reset()
    return packet_lab
