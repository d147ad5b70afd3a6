"""The bulk package's exception tree: manifest, state, cluster and cancel errors."""
from __future__ import annotations


class BulkError(Exception):
    """Base of every error the bulk orchestration raises."""

    code = "bulk_error"
    exit_code = 4


class ManifestError(BulkError):
    """The manifest is missing, not TOML, or breaks the schema (file and key path named)."""

    code = "bad_manifest"
    exit_code = 2

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        more = len(self.problems) - 1
        first = self.problems[0] if self.problems else "invalid manifest"
        super().__init__(first + (f" (and {more} more problem{'s' * (more > 1)})" if more else ""))


class SecretInManifestError(ManifestError):
    """A SAS, key or password was written into the manifest instead of an env var name."""

    code = "secret_in_manifest"


class StateError(BulkError):
    """The state database cannot be opened, or belongs to another manifest."""

    code = "bad_state"
    exit_code = 3


class ClusterError(BulkError):
    """The Dask scheduler could not be reached or started."""

    code = "cluster_error"


class InsecureListenError(BulkError):
    """A scheduler asked to listen beyond loopback without TLS and without --insecure."""

    code = "insecure_listen"
    exit_code = 5


class RunInterrupted(BulkError):
    """Ctrl-C: the run stopped cooperatively; its state is kept for the next run."""

    code = "interrupted"
    exit_code = 130


class VerifyFailedError(BulkError):
    """What was uploaded differs from the source (read back after the upload)."""

    code = "verify_failed"
    exit_code = 1


class OutputExistsError(BulkError):
    """The file to write exists and --force was not given."""

    code = "output_exists"
    exit_code = 5


class TlsConfigError(BulkError):
    """TLS options that do not go together, or files that cannot be loaded."""

    code = "tls_config"
    exit_code = 2


class TlsRefusedError(ClusterError):
    """A TLS handshake in the cluster failed: one side does not trust the other's certificate."""

    code = "tls_refused"
    exit_code = 5
