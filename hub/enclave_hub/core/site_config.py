"""The site configuration: one YAML file that describes a deployment, validated on load.

Every key has a default, so an empty file is a working single-machine deployment with the
development identity provider and its demo users. Errors name the key that is wrong.
"""

from __future__ import annotations

import os
from ipaddress import IPv4Address, ip_address
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

import yaml
from pydantic import (
    AnyHttpUrl,
    BaseModel,
    ByteSize,
    ConfigDict,
    Field,
    IPvAnyAddress,
    ValidationError,
    model_validator,
)

from enclave.catalog import IDENTIFIER_PATTERN

from .addresses import IPV4_POOL as SESSION_NETWORK

DEFAULT_STATE_DIR = Path("/var/lib/enclave")
CONFIG_FILE_NAME = "enclave.yaml"

Identifier = Annotated[str, Field(pattern=f"^{IDENTIFIER_PATTERN}$")]
Port = Annotated[int, Field(ge=1, le=65535)]


class HostPort(BaseModel):
    """A host and TCP port, written 'host:port' or '[ipv6]:port'."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    host: str = Field(min_length=1)
    port: Port

    @model_validator(mode="before")
    @classmethod
    def _from_text(cls, value: object) -> object:
        if not isinstance(value, str):
            return value
        host, sep, port = value.rpartition(":")
        if not sep or not host:
            raise ValueError(f"'{value}' is not host:port")
        return {"host": host.strip("[]"), "port": port}

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


class SiteConfigError(Exception):
    """The site configuration cannot be used; the message names the file and the key."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class HubSettings(_Section):
    """Where the hub listens. Only the public port is meant to be reached by browsers."""

    bind: IPvAnyAddress = Field(default="127.0.0.1", description="address of the public proxy port")
    port: Port = Field(default=8000, description="public port (the proxy)")
    proxy_api_port: Port = Field(default=8001, description="the proxy's REST API, on loopback")
    hub_port: Port = Field(default=8081, description="the hub itself, on loopback")
    public_url: AnyHttpUrl | None = Field(
        default=None,
        description="URL users reach; defaults to http://localhost:<port> (with user_subdomains "
        "and a loopback bind) or http://<bind>:<port>",
    )
    user_subdomains: bool = Field(
        default=True,
        description="serve each user's sessions from an origin of their own, <user>.<host of "
        "public_url>, so that a page one user's files put in a browser cannot act on the hub or "
        "another user's sessions; needs a host name in public_url and, on a network, wildcard "
        "DNS and certificate (on one machine, browsers take *.localhost to be this machine)",
    )
    extra_config: Path | None = Field(
        default=None,
        description="a JupyterHub config file applied after Enclave's own, for overrides",
    )


class DemoUser(_Section):
    """A user of the development identity provider."""

    username: Identifier
    name: str
    email: str
    groups: list[str] = []
    role: str = Field(description="what the user is for, shown when Enclave starts")


class DevProviderSettings(_Section):
    """The bundled development OIDC provider (started only when no issuer is named)."""

    port: Port = 9400
    users: list[DemoUser] = Field(default_factory=lambda: list(DEMO_USERS))


class IdentitySettings(_Section):
    """The OpenID Connect provider that authenticates users."""

    issuer: AnyHttpUrl | None = Field(
        default=None,
        description="an external OIDC issuer; when unset the development provider runs",
    )
    client_id: str = "enclave-hub"
    scopes: list[str] = ["openid", "profile", "email"]
    username_claim: str = "preferred_username"
    groups_claim: str = "groups"
    allowed_groups: list[str] = ["researchers", "admins", "auditors", "output-checkers"]
    admin_groups: list[str] = ["admins"]
    refresh_age: int = Field(
        default=300,
        ge=1,
        description="seconds before a user's groups are asked of the provider again; a user "
        "removed from every allowed group then loses their sessions and API tokens",
    )
    dev_provider: DevProviderSettings = Field(default_factory=DevProviderSettings)

    @model_validator(mode="after")
    def _some_group_is_allowed(self) -> IdentitySettings:
        if not self.allowed_groups:
            raise ValueError("allowed_groups must name at least one group")
        return self


class DaskLimits(_Section):
    """What a project's Dask clusters may use: each worker, each cluster, and all together.

    Worker cores and memory are both the default and the most a user may ask for. Limits count
    workers only; each cluster's scheduler has `dask.scheduler_memory` and one core besides.
    """

    worker_cores: int = Field(default=1, ge=1)
    worker_memory: ByteSize = Field(default=ByteSize(2 * 1024**3))
    default_workers: int = Field(default=2, ge=0, description="what enclave.dask_client() asks")
    cluster_workers: int = Field(default=4, ge=0)
    cluster_cores: int = Field(default=4, ge=0)
    cluster_memory: ByteSize = Field(default=ByteSize(8 * 1024**3))
    project_workers: int = Field(default=8, ge=0, description="over all the project's clusters")
    project_cores: int = Field(default=8, ge=0)
    project_memory: ByteSize = Field(default=ByteSize(16 * 1024**3))
    idle_timeout: int = Field(
        default=1800, ge=0, description="seconds without work before a cluster stops; 0: never"
    )

    @model_validator(mode="after")
    def _limits_nest(self) -> DaskLimits:
        for what in ("workers", "cores", "memory"):
            if getattr(self, f"cluster_{what}") > getattr(self, f"project_{what}"):
                raise ValueError(f"cluster_{what} is above project_{what}")
        if self.default_workers > self.cluster_workers:
            raise ValueError("default_workers is above cluster_workers")
        return self


class Toleration(_Section):
    """A Kubernetes toleration: lets sessions of a profile onto nodes tainted for them."""

    key: str = Field(min_length=1)
    operator: Literal["Exists", "Equal"] = "Equal"
    value: str | None = None
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = None


class Profile(_Section):
    """The resources of a session, and of its project's Dask clusters."""

    cpus: float = Field(default=1.0, gt=0)
    memory: ByteSize = Field(default=ByteSize(4 * 1024**3), description="limit, e.g. 4GiB")
    pids: int = Field(default=1024, ge=16, description="most processes and threads at once")
    gpus: int = Field(default=0, ge=0)
    terminals: Literal["recorded", "off"] = Field(
        default="recorded",
        description="JupyterLab's terminals: each line typed recorded before it runs, or none",
    )
    dask: DaskLimits = Field(default_factory=DaskLimits)
    node_selector: dict[str, str] = Field(
        default={}, description="on Kubernetes: node labels a session's node must have"
    )
    tolerations: list[Toleration] = Field(
        default=[], description="on Kubernetes: taints a session's node may have"
    )
    job_profiles: list[Identifier] = Field(
        default=[],
        description="other profiles the jobs of this profile's projects may run with (a GPU "
        "profile for training, say); the project's own profile is always one",
    )


class SessionSettings(_Section):
    """Notebook sessions: where their homes live, their uids, resources and network."""

    workspace_root: Path = Path("/srv/enclave/workspaces")
    uid_base: int = Field(
        default=200000,
        ge=1000,
        description="a session runs as uid_base + its server's number; never root",
    )
    gid_base: int = Field(
        default=100000,
        ge=1000,
        description="each project's group is gid_base + the project's number",
    )
    start_timeout: int = Field(default=120, ge=5)
    view_max_bytes: ByteSize = Field(
        default=ByteSize(5 * 1024**2),
        description="the most of one file a session gives the browser to show (text, notebooks, "
        "images); larger files, and other kinds, leave only through the airlock",
    )
    poll_interval: int = Field(
        default=10, ge=1, description="seconds between checks of a running session"
    )
    hub_address: IPv4Address = Field(
        default=IPv4Address("169.254.250.1"),
        description="the hub's address on its own link, the one address sessions may reach",
    )
    egress_allow: list[HostPort] = Field(
        default=[], description="host:port entries sessions may connect to (a mirror, say)"
    )
    profiles: dict[Identifier, Profile] = Field(default_factory=lambda: {"default": Profile()})

    @model_validator(mode="after")
    def _ranges_do_not_overlap(self) -> SessionSettings:
        if self.hub_address in SESSION_NETWORK:
            raise ValueError(f"hub_address must lie outside {SESSION_NETWORK}, the sessions' pool")
        if "default" not in self.profiles:
            raise ValueError("profiles must include one named 'default'")
        for name, profile in self.profiles.items():
            unknown = sorted(set(profile.job_profiles) - set(self.profiles))
            if unknown:
                raise ValueError(f"profiles.{name}.job_profiles: no profile {unknown[0]!r}")
        return self


KEY_FINGERPRINT = "sha256:[0-9a-f]{64}"  # an audit key's fingerprint, as the site pins it


class AuditSettings(_Section):
    """The audit service: its port on the hub's address, where its log lives, who may read it."""

    port: Port = Field(
        default=8082, description="on sessions.hub_address, beside the hub; sessions send here"
    )
    log_dir: Path | None = Field(
        default=None, description="the log's folder (default: <state_dir>/audit); its own volume"
    )
    auditor_groups: list[str] = Field(
        default=["auditors"], description="identity groups whose members use the audit console"
    )
    failed_login_limit: int = Field(
        default=5, ge=1, description="failed logins recorded one by one per address and minute"
    )
    failed_login_total: int = Field(
        default=50, ge=1, description="failed logins recorded one by one per minute, in all"
    )
    key_fingerprint: str | None = Field(
        default=None,
        pattern=f"^{KEY_FINGERPRINT}$",
        description="the audit signing key's fingerprint (sha256:HEX of the raw public key), "
        "the only key `enclave audit verify` and the console trust; `enclave up` pins it on "
        "first start",
    )
    witness_dir: Path | None = Field(
        default=None,
        description="a folder on another volume, append-only to the audit service (chattr +a), "
        "where every signed checkpoint is published with its consistency proof",
    )


class RegistrySettings(_Section):
    """The project registry: its database, and how often sessions are checked against it."""

    database_url: str | None = Field(
        default=None,
        description="sqlite:///PATH or postgresql+psycopg://USER:PASSWORD@HOST/DB; default: SQLite",
    )
    reconcile_interval: int = Field(
        default=30, ge=1, description="seconds between checks of running sessions"
    )
    port: Port = Field(default=8083, description="the registry service, on loopback")


class DaskSettings(_Section):
    """The Dask gateway: its ports on the hub's address, and what its clusters run as."""

    api_port: Port = Field(default=8084, description="the gateway's own API: schedulers report")
    proxy_port: Port = Field(default=8085, description="HTTP: the API as sessions reach it")
    scheduler_proxy_port: Port = Field(
        default=8086, description="TLS: sessions' connections to their schedulers"
    )
    uid_base: int = Field(
        default=300000, ge=1000, description="a cluster runs as uid_base + its sandbox number"
    )
    scheduler_memory: ByteSize = Field(default=ByteSize(1024**3))
    check_interval: int = Field(
        default=5, ge=1, description="seconds between checks that each cluster's session runs"
    )
    prepared_clusters: int = Field(
        default=4,
        ge=0,
        description="the most clusters kept ready ahead of demand, each for one running "
        "session (about 80 MiB each); 0 for none",
    )


class AirlockSettings(_Section):
    """The airlock: where outputs wait for review, and the rules their automatic checks apply.

    The statistical rules are those of the usual output-checking guidance: no cell below a
    minimum count, no cell dominated by its largest contributors, no contributor's value
    estimable within `p_ratio` by another. GWAS summary statistics have their own: no variant
    below a minimum minor allele count or sample size.
    """

    port: Port = Field(default=8087, description="on sessions.hub_address; sessions send here")
    store_dir: Path | None = Field(
        default=None, description="snapshots and outboxes (default: <state_dir>/airlock)"
    )
    reviews_required: int = Field(
        default=2, ge=1, description="approvals by distinct output checkers, never the requester"
    )
    min_cell_count: int = Field(default=10, ge=1, description="smallest count a table may show")
    dominance_share: float = Field(
        default=0.9, gt=0, le=1, description="a cell fails when its top 2 contributors hold this"
    )
    p_ratio: float = Field(
        default=0.1, gt=0, le=1, description="a cell fails when the rest is below this x top 1"
    )
    max_table_rows: int = Field(
        default=1000, ge=1, description="tables longer than this are flagged as row-level data"
    )
    # GWAS summary statistics. A minor allele count of 20 means at least 10 carriers (a carrier
    # holds at most two copies): the floor `min_cell_count` sets for any group. A sample size of
    # 50 keeps each participant to at most 2% of a frequency: whether a person's genotypes show
    # them to be in a study, from its per-variant frequencies, is easier the fewer took part for
    # as many variants (Homer et al. 2008; Sankararaman et al. 2009).
    min_allele_count: int = Field(
        default=20, ge=1, description="smallest minor allele count of a GWAS summary statistic"
    )
    min_sample_size: int = Field(
        default=50, ge=1, description="smallest sample size (N) of a GWAS summary statistic"
    )
    max_file_size: ByteSize = Field(default=ByteSize(50 * 1024**2))
    max_request_size: ByteSize = Field(default=ByteSize(200 * 1024**2))
    max_files: int = Field(default=50, ge=1, description="files in one request")
    max_archive_members: int = Field(default=500, ge=1)
    max_expanded_size: ByteSize = Field(
        default=ByteSize(200 * 1024**2), description="an archive's contents, all together"
    )
    max_compression_ratio: int = Field(
        default=100, ge=1, description="an archive member expanding more than this is refused"
    )
    check_timeout: int = Field(default=120, ge=5, description="seconds the checks of a request get")
    check_memory: ByteSize = Field(
        default=ByteSize(4 * 1024**3), description="address space of the checks' process"
    )


class InquirySettings(_Section):
    """The data inquiry portal: who may use it, and what its counts of persons may show.

    A count below `min_count` is shown as "fewer than <min_count>"; others are rounded to a
    multiple of `round_to`. Each person may ask `queries_per_minute` counts a minute.
    """

    port: Port = Field(default=8088, description="the inquiry service, on loopback")
    groups: list[str] = Field(
        default=["researchers", "admins", "auditors"],
        description="identity groups whose members use the portal, members of no project too",
    )
    min_count: int = Field(default=10, ge=1, description="smallest count of persons shown")
    round_to: int = Field(default=10, ge=1, description="counts are rounded to a multiple of this")
    queries_per_minute: int = Field(default=30, ge=1, description="counts one person may ask")


class PackagesSettings(_Section):
    """The package index of sessions: which names they may install, and where files come from.

    Sessions' `pip` asks this index alone. It answers for the names of `allow`, and those an
    admin allowed for every project or the session's own; any other name is refused here and
    never asked of `upstream`, so that a package name cannot carry data out.
    """

    port: Port = Field(default=8089, description="on sessions.hub_address; sessions' pip asks here")
    upstream: AnyHttpUrl | None = Field(
        default=None,
        description="a PEP 503 simple index the files come from; default: the index this "
        "host's pip uses",
    )
    allow: list[str] = Field(default=[], description="package names every project may install")
    cache_dir: Path | None = Field(
        default=None, description="the files fetched, by hash (default: <state_dir>/packages)"
    )
    listing_ttl: int = Field(
        default=600, ge=0, description="seconds a package's file list from upstream is kept"
    )
    max_file_size: ByteSize = Field(
        default=ByteSize(2 * 1024**3), description="the largest file fetched from upstream"
    )


class JobSettings(_Section):
    """Jobs: notebooks and scripts that run in a sandbox of their project, apart from any
    session, one after another within these limits."""

    port: Port = Field(default=8090, description="on sessions.hub_address; sessions submit here")
    per_project: int = Field(default=1, ge=1, description="jobs of one project running at once")
    gpus: list[int] | None = Field(
        default=None,
        description="the GPUs (by index) jobs may use, each by one job at a time; default: "
        "every GPU of the host",
    )
    max_queued: int = Field(default=20, ge=1, description="jobs of one project waiting at once")
    max_code_size: ByteSize = Field(
        default=ByteSize(20 * 1024**2), description="the largest notebook or script submitted"
    )
    time_limit: int = Field(
        default=7 * 24 * 3600, ge=1, description="seconds a job may run before it is stopped"
    )
    check_interval: float = Field(
        default=1.0, gt=0, description="seconds between checks of queued and running jobs"
    )


class KubernetesSettings(_Section):
    """Where things are when Enclave runs on Kubernetes; the Helm chart fills this in from its
    release. Its presence is what says that a deployment runs on Kubernetes."""

    session_image: str = Field(
        default="enclave/notebook:0.1.0", description="the notebook image of sessions"
    )
    gpu_session_image: str = Field(
        default="enclave/notebook-gpu:0.1.0", description="the image of profiles with GPUs"
    )
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] = "IfNotPresent"
    workspace_claim: str = Field(
        default="enclave-workspaces",
        description="the volume claim of workspaces: <project>/home/<user>, <project>/shared",
    )
    data_claim: str = Field(
        default="enclave-datasets", description="the volume claim of datasets, one folder each"
    )
    session_uid: int = Field(default=1000, ge=1000, description="sessions run as this uid")
    namespace: str = Field(
        default="enclave", description="the release's namespace, where Dask clusters are made"
    )
    dns_nameservers: list[str] = Field(
        default=[],
        description="the allow-list resolver's addresses, the only DNS that sessions and Dask "
        "pods ask; empty: the cluster's DNS",
    )
    cluster_domain: str = "cluster.local"
    hub_url: str = Field(default="http://hub:8081", description="the hub's API, in the cluster")
    registry_url: str = "http://enclave-registry:8083"
    audit_url: str = "http://enclave-audit:8082"
    airlock_url: str = "http://enclave-airlock:8087"
    inquiry_url: str = "http://enclave-inquiry:8088"
    packages_url: str = "http://enclave-packages:8089"
    jobs_url: str = "http://enclave-jobs:8090"
    gateway_url: str = Field(
        default="http://traefik-enclave-dask-gateway", description="the Dask gateway's API"
    )
    gateway_proxy_address: str = Field(
        default="gateway://traefik-enclave-dask-gateway:80",
        description="where sessions' Dask clients reach their schedulers",
    )


class Project(_Section):
    """A seed project: put into the registry when it is empty (on first start)."""

    id: Identifier
    title: str
    members: list[str] = []
    checkers: list[str] = Field(default=[], description="the project's output checkers")
    datasets: list[Identifier] = []
    profile: Identifier = "default"


class SiteConfig(_Section):
    """A whole deployment."""

    state_dir: Path = Field(
        default=DEFAULT_STATE_DIR,
        description="hub database, secrets and logs; readable by root only",
    )
    data_root: Path = Path("/srv/enclave/data")
    hub: HubSettings = Field(default_factory=HubSettings)
    identity: IdentitySettings = Field(default_factory=IdentitySettings)
    sessions: SessionSettings = Field(default_factory=SessionSettings)
    audit: AuditSettings = Field(default_factory=AuditSettings)
    registry: RegistrySettings = Field(default_factory=RegistrySettings)
    dask: DaskSettings = Field(default_factory=DaskSettings)
    airlock: AirlockSettings = Field(default_factory=AirlockSettings)
    inquiry: InquirySettings = Field(default_factory=InquirySettings)
    packages: PackagesSettings = Field(default_factory=PackagesSettings)
    jobs: JobSettings = Field(default_factory=JobSettings)
    kubernetes: KubernetesSettings | None = Field(
        default=None, description="set (by the Helm chart) when Enclave runs on Kubernetes"
    )
    projects: list[Project] = Field(default_factory=lambda: list(SEED_PROJECTS))
    demo_datasets: bool = Field(
        default=True,
        description="with the development provider: on first start, ingest the demo datasets "
        "(a slide, a CT series, a single-cell matrix) and grant them to the seed projects",
    )

    @model_validator(mode="after")
    def _dev_provider_only_on_loopback(self) -> SiteConfig:
        """The development provider signs anyone in as anyone: only on a hub nobody else
        reaches."""
        if self.uses_dev_provider and not ip_address(str(self.hub.bind)).is_loopback:
            raise ValueError(
                f"hub.bind: {self.hub.bind} is reached from other machines, and without "
                "identity.issuer the development provider, which signs anyone in as anyone, "
                "would be their sign-in; bind the hub to a loopback address or set "
                "identity.issuer to your institution's provider"
            )
        return self

    @model_validator(mode="after")
    def _user_subdomains_need_a_name(self) -> SiteConfig:
        host = urlsplit(self.public_url).hostname or ""
        try:
            ip_address(host)
        except ValueError:
            return self
        if self.hub.user_subdomains:
            raise ValueError(
                f"hub.user_subdomains: each user's sessions are served from <user>.<host>, and "
                f"{host} is an address, not a name; set hub.public_url to a name whose "
                "subdomains reach this hub, or set hub.user_subdomains to false"
            )
        return self

    @model_validator(mode="after")
    def _ports_are_distinct(self) -> SiteConfig:
        seen: dict[int, str] = {}
        for key, port in self.ports.items():
            if port in seen:
                raise ValueError(f"{key} and {seen[port]} both use port {port}")
            seen[port] = key
        return self

    @model_validator(mode="after")
    def _profiles_exist(self) -> SiteConfig:
        for index, project in enumerate(self.projects):
            if project.profile not in self.sessions.profiles:
                raise ValueError(
                    f"projects.{index}.profile: no profile '{project.profile}' in sessions.profiles"
                )
        return self

    @property
    def public_url(self) -> str:
        if self.hub.public_url is not None:
            return str(self.hub.public_url).rstrip("/")
        if self.hub.user_subdomains and ip_address(str(self.hub.bind)).is_loopback:
            return f"http://localhost:{self.hub.port}"
        return f"http://{self.hub.bind}:{self.hub.port}"

    @property
    def audit_dir(self) -> Path:
        return self.audit.log_dir or self.state_dir / "audit"

    @property
    def registry_url(self) -> str:
        return self.registry.database_url or f"sqlite:///{self.state_dir / 'registry.sqlite'}"

    @property
    def audit_key_path(self) -> Path:
        """The checkpoint signing key: apart from the log, read by the audit service alone."""
        return self.state_dir / "audit-key" / "signing.key"

    @property
    def listen_address(self) -> str:
        """Where the services that sessions reach listen: the hub's address on this machine, or
        every address of the service's own pod on Kubernetes."""
        return "0.0.0.0" if self.kubernetes else str(self.sessions.hub_address)

    @property
    def audit_url(self) -> str:
        """Where the audit service listens: on the hub's address, which sessions reach."""
        if self.kubernetes:
            return self.kubernetes.audit_url
        return f"http://{self.sessions.hub_address}:{self.audit.port}"

    @property
    def hub_url(self) -> str:
        """Where the hub itself listens: the address sessions, the proxy and tools reach."""
        if self.kubernetes:
            return self.kubernetes.hub_url
        return f"http://{self.sessions.hub_address}:{self.hub.hub_port}"

    @property
    def ports(self) -> dict[str, int]:
        """Every port this deployment listens on, by its key in this configuration."""
        ports = {
            "hub.port": self.hub.port,
            "hub.proxy_api_port": self.hub.proxy_api_port,
            "hub.hub_port": self.hub.hub_port,
            "audit.port": self.audit.port,
            "registry.port": self.registry.port,
            "airlock.port": self.airlock.port,
            "inquiry.port": self.inquiry.port,
            "packages.port": self.packages.port,
            "jobs.port": self.jobs.port,
            "dask.api_port": self.dask.api_port,
            "dask.proxy_port": self.dask.proxy_port,
            "dask.scheduler_proxy_port": self.dask.scheduler_proxy_port,
        }
        if self.uses_dev_provider:
            ports["identity.dev_provider.port"] = self.identity.dev_provider.port
        return ports

    def platform_role(self, groups) -> str | None:
        """'admin' or 'auditor' for someone in those identity-provider groups (admin first),
        else None: the platform's readers, who see every project's registry and requests."""
        held = set(groups)
        if held & set(self.identity.admin_groups):
            return "admin"
        if held & set(self.audit.auditor_groups):
            return "auditor"
        return None

    @property
    def hub_api_url(self) -> str:
        """The hub's REST API, where the services and tools reach it."""
        return f"{self.hub_url}/hub/api"

    @property
    def gateway_url(self) -> str:
        """The Dask gateway's API as sessions reach it, on the hub's address."""
        if self.kubernetes:
            return self.kubernetes.gateway_url
        return f"http://{self.sessions.hub_address}:{self.dask.proxy_port}"

    @property
    def gateway_scheduler_proxy(self) -> str:
        """Where sessions' Dask clients connect (TLS, routed to the cluster by name)."""
        if self.kubernetes:
            return self.kubernetes.gateway_proxy_address
        return f"gateway://{self.sessions.hub_address}:{self.dask.scheduler_proxy_port}"

    @property
    def airlock_url(self) -> str:
        """Where the airlock service listens: on the hub's address, which sessions reach."""
        if self.kubernetes:
            return self.kubernetes.airlock_url
        return f"http://{self.sessions.hub_address}:{self.airlock.port}"

    @property
    def packages_url(self) -> str:
        """Where the package index listens: on the hub's address, which sessions reach."""
        if self.kubernetes:
            return self.kubernetes.packages_url
        return f"http://{self.sessions.hub_address}:{self.packages.port}"

    @property
    def jobs_url(self) -> str:
        """Where the job service listens: on the hub's address, which sessions reach."""
        if self.kubernetes:
            return self.kubernetes.jobs_url
        return f"http://{self.sessions.hub_address}:{self.jobs.port}"

    @property
    def packages_cache_dir(self) -> Path:
        return self.packages.cache_dir or self.state_dir / "packages"

    @property
    def inquiry_service_url(self) -> str:
        """Where the hub routes the inquiry portal: loopback here, its service on Kubernetes."""
        if self.kubernetes:
            return self.kubernetes.inquiry_url
        return f"http://127.0.0.1:{self.inquiry.port}"

    @property
    def registry_service_url(self) -> str:
        """Where the hub routes the registry's pages: loopback here, its service on Kubernetes."""
        if self.kubernetes:
            return self.kubernetes.registry_url
        return f"http://127.0.0.1:{self.registry.port}"

    @property
    def airlock_dir(self) -> Path:
        return self.airlock.store_dir or self.state_dir / "airlock"

    @property
    def uses_dev_provider(self) -> bool:
        return self.identity.issuer is None

    @property
    def issuer_url(self) -> str:
        if self.identity.issuer is not None:
            return str(self.identity.issuer).rstrip("/")
        return f"http://127.0.0.1:{self.identity.dev_provider.port}"


DEMO_USERS = tuple(
    DemoUser(
        username=username,
        name=name,
        email=f"{username}@example.org",
        groups=[group],
        role=role,
    )
    for username, name, group, role in (
        ("alice", "Alice Researcher", "researchers", "researcher"),
        ("nina", "Nina Applicant", "researchers", "researcher of no project yet"),
        ("bob", "Bob Researcher", "researchers", "researcher"),
        ("carol", "Carol Admin", "admins", "admin"),
        ("dave", "Dave Auditor", "auditors", "auditor"),
        ("erin", "Erin Output-Checker", "output-checkers", "output checker"),
        ("rose", "Rose Output-Checker", "output-checkers", "output checker"),
    )
)

SEED_PROJECTS = (
    Project(
        id="cancer-imaging",
        title="Cancer imaging cohort",
        members=["alice", "bob"],
        checkers=["erin", "rose"],
    ),
    Project(id="genomics-pilot", title="Single-cell genomics pilot", members=["alice"]),
    Project(id="cardiac-mri", title="Cardiac MRI study", members=["bob"]),
)


def _key_path(location: tuple[Any, ...]) -> str:
    return ".".join(str(part) for part in location)


def _describe(error: dict[str, Any]) -> str:
    message = error["msg"].removeprefix("Value error, ")
    if error["type"] == "extra_forbidden":
        message = "unknown key"
    if not error["loc"]:
        return message
    return f"{_key_path(error['loc'])}: {message}"


def parse_site_config(data: Any, source: str) -> SiteConfig:
    """Validate already-parsed YAML; raise SiteConfigError naming every bad key."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise SiteConfigError(f"{source}: the top level must be a mapping of keys")
    try:
        return SiteConfig.model_validate(data)
    except ValidationError as error:
        problems = "; ".join(_describe(e) for e in error.errors())
        raise SiteConfigError(f"{source}: {problems}") from None


def load_site_config(path: Path) -> SiteConfig:
    """Read and validate a site configuration file."""
    try:
        text = path.read_text()
    except OSError as error:
        raise SiteConfigError(
            f"{path}: cannot read the site configuration: {error.strerror}"
        ) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise SiteConfigError(f"{path}: not valid YAML: {error}") from None
    return parse_site_config(data, str(path))


def default_state_dir() -> Path:
    return Path(os.environ.get("ENCLAVE_STATE_DIR", DEFAULT_STATE_DIR))


def write_site_config(site: SiteConfig, path: Path, header: str = "") -> None:
    """Write `site` as YAML, readable by its owner only."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(header)
        yaml.safe_dump(site.model_dump(mode="json", exclude_none=True), out, sort_keys=False)


def write_default_site_config(state_dir: Path) -> Path:
    """Write the default configuration into a new state directory."""
    state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = state_dir / CONFIG_FILE_NAME
    header = (
        "# Enclave site configuration. Every key is optional: the README describes them, and\n"
        "# docs/architecture.md which process reads what.\n"
        "# Secrets are not kept here: they live in secrets/ beside this file (mode 0600).\n"
    )
    write_site_config(SiteConfig(state_dir=state_dir), path, header)
    return path


def site_config(path: Path | None) -> SiteConfig:
    """The named configuration, or the state directory's, written with defaults if new."""
    if path is not None:
        return load_site_config(path)
    default = default_state_dir() / CONFIG_FILE_NAME
    if not default.exists():
        write_default_site_config(default_state_dir())
        print(f"Wrote a default site configuration to {default}", flush=True)
    return load_site_config(default)
