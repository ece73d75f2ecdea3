"""Studies: storage URLs, the stored configuration, create/resume/run, export, report, the front table."""

from .config import StudyConfig, StudyConfigError
from .export import export_front
from .front import format_table, pareto_front
from .report import write_report
from .storage import default_url, open_storage
from .study import StudyNotFoundError, check_existing, create, open_study, run, stored_config

__all__ = ["StudyConfig", "StudyConfigError", "StudyNotFoundError", "check_existing", "create", "default_url",
           "export_front", "format_table", "open_storage", "open_study", "pareto_front", "run", "stored_config",
           "write_report"]
