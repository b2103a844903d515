"""Settings from the environment (prefix ``COPYTRADE_``): the one place an environment is chosen.

The embedded default is a SQLite ledger and a DuckDB warehouse under ``var/`` of the project,
the bundled paper exchange on loopback, and Prefect's ephemeral server.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_PAPER_PORT = 8765


class Settings(BaseSettings):
    """Runtime configuration; every field can be set as ``COPYTRADE_<FIELD>``."""

    model_config = SettingsConfigDict(env_prefix="COPYTRADE_", extra="ignore")

    home: Path = Field(default=PROJECT_ROOT / "var", description="Folder for local state.")
    database_url: str | None = Field(
        default=None,
        description="SQLAlchemy URL of the ledger; default: SQLite file var/copytrade.db.",
    )
    warehouse_path: Path | None = Field(default=None, description="DuckDB warehouse file.")
    data_dir: Path = Field(
        default=PROJECT_ROOT.parent / "shared" / "data",
        description="Reference market data (candles, filters, leader fills).",
    )
    paper_host: str = "127.0.0.1"
    paper_port: int = DEFAULT_PAPER_PORT
    # Unset: `copytrade paper serve` generates a random token and keeps it in
    # paper_admin_token_file (0600), where the admin commands read it (copytrade.paper.admin_token).
    paper_admin_token: SecretStr | None = None
    # Bounds of R-LEAD-1/2 are configuration with the SPEC's defaults.
    spot_capital_min: int = 500
    spot_capital_max: int = 250_000
    futures_capital_min: int = 1_000
    futures_capital_max: int = 500_000

    @property
    def ledger_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.home / 'copytrade.db'}"

    @property
    def warehouse(self) -> Path:
        return self.warehouse_path or self.home / "warehouse.duckdb"

    @property
    def paper_admin_token_file(self) -> Path:
        return self.home / "paper-admin-token"

    @property
    def paper_url(self) -> str:
        return f"http://{self.paper_host}:{self.paper_port}"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Return the process-wide settings (read once from the environment)."""
    return Settings()
