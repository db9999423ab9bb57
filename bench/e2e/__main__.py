from ..common import main_for
from . import PART, run

main_for(PART, run)
