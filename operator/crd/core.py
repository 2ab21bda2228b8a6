"""Typed pieces of core/v1 the proxy pod template takes from LLMGateway spec.pod: security contexts, volumes and
volume mounts.

Typed rather than free-form (x-kubernetes-preserve-unknown-fields): a misspelt field is refused at `kubectl apply`
instead of being dropped by the API server when the operator applies the Deployment, and the CRD documents each
field. Field names, types and meanings follow core/v1 (Kubernetes 1.30+); the builder copies them whole
(``model_dump``), so every field typed here reaches the pod. Volume sources are the ones a proxy needs (CA
bundles, extra secrets, CSI secret stores, scratch space); node-level ones such as hostPath are deliberately absent.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic.alias_generators import to_camel

DNS_LABEL = r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$"
# Absolute, normalised (no empty, "." or ".." segment, no trailing slash), never "/" itself.
MOUNT_PATH = r"^(/[^/]+)+$"
# Brackets, not backslashes: the same text is a CEL string literal in the CRD.
DOT_SEGMENT = r"(^|/)[.][.]?(/|$)"
# The operator's own volumes and where the proxy container mounts them (gateway_operator.builders.proxy): a user
# volume of the same name, or a mount at, under or above one of these paths, would replace what kubegate runs on.
OPERATOR_MOUNTS = {
    "config": "/etc/kubegate/config",
    "policy": "/etc/kubegate/policy",
    "tmp": "/tmp",
    "prometheus": "/var/run/kubegate/prometheus",
    "redis-ca": "/etc/kubegate/redis-ca",
    "redis-client-cert": "/etc/kubegate/redis-client-cert",
}
REDIS_CA_FILE = f"{OPERATOR_MOUNTS['redis-ca']}/ca.crt"
# A kubernetes.io/tls Secret's keys, mounted under the same names.
REDIS_CLIENT_CERT_FILE = f"{OPERATOR_MOUNTS['redis-client-cert']}/tls.crt"
REDIS_CLIENT_KEY_FILE = f"{OPERATOR_MOUNTS['redis-client-cert']}/tls.key"


def overlaps(path: str, other: str) -> bool:
    """Whether mounting at ``path`` would hide or be hidden by a mount at ``other``."""
    return path == other or path.startswith(other + "/") or other.startswith(path + "/")


FILE_MODE = Field(default=None, ge=0, le=0o777, description="File mode bits (octal 0400 in YAML, or decimal 256).")


class CoreV1(BaseModel):
    """Base of the typed core/v1 pieces (the builder copies them whole into the pod template)."""

    # core/v1's own camelCase names; strict like the rest of the spec.
    model_config = ConfigDict(extra="forbid", populate_by_name=True, alias_generator=to_camel)


class SeccompProfile(CoreV1):
    """The seccomp filter of the pod or container."""

    type: Literal["RuntimeDefault", "Localhost", "Unconfined"] = Field(description="Which kind of profile.")
    localhost_profile: str | None = Field(default=None, description="Profile file on the node (type Localhost).")


class AppArmorProfile(CoreV1):
    """The AppArmor profile of the pod or container."""

    type: Literal["RuntimeDefault", "Localhost", "Unconfined"] = Field(description="Which kind of profile.")
    localhost_profile: str | None = Field(default=None, description="Profile loaded on the node (type Localhost).")


class SELinuxOptions(CoreV1):
    """SELinux labels of the pod or container."""

    user: str | None = Field(default=None, description="SELinux user label.")
    role: str | None = Field(default=None, description="SELinux role label.")
    type: str | None = Field(default=None, description="SELinux type label.")
    level: str | None = Field(default=None, description="SELinux level label.")


class WindowsSecurityContextOptions(CoreV1):
    """Windows-specific settings (ignored on Linux nodes)."""

    gmsa_credential_spec: str | None = Field(default=None, description="GMSA credential spec contents.")
    gmsa_credential_spec_name: str | None = Field(default=None, description="Name of the GMSACredentialSpec.")
    host_process: bool | None = Field(default=None, description="Run as a Windows HostProcess container.")
    run_as_user_name: str | None = Field(default=None, description="Windows user name of the entrypoint.")


class Capabilities(CoreV1):
    """Linux capabilities added to or dropped from the container."""

    add: list[str] | None = Field(default=None, description="Capabilities to add, e.g. NET_BIND_SERVICE.")
    drop: list[str] | None = Field(default=None, description="Capabilities to drop, e.g. ALL.")


class Sysctl(CoreV1):
    """A namespaced kernel parameter set for the pod."""

    name: str = Field(min_length=1, description="Parameter name, e.g. net.ipv4.ip_local_port_range.")
    value: str = Field(description="Parameter value.")


class _CommonSecurity(CoreV1):
    run_as_user: int | None = Field(default=None, ge=0, description="UID the entrypoint runs as.")
    run_as_group: int | None = Field(default=None, ge=0, description="GID the entrypoint runs as.")
    run_as_non_root: bool | None = Field(default=None, description="Refuse to start as UID 0.")
    seccomp_profile: SeccompProfile | None = Field(default=None, description="Seccomp profile.")
    app_armor_profile: AppArmorProfile | None = Field(default=None, description="AppArmor profile.")
    se_linux_options: SELinuxOptions | None = Field(default=None, description="SELinux labels.")
    windows_options: WindowsSecurityContextOptions | None = Field(default=None, description="Windows settings.")


class PodSecurityContext(_CommonSecurity):
    """Pod-level security attributes (core/v1 PodSecurityContext), e.g. fsGroup for mounted volumes. The proxy
    container's own restricted context still applies (and wins where both set a field)."""

    fs_group: int | None = Field(default=None, ge=0, description="Group owning the pod's volumes (and their files).")
    fs_group_change_policy: Literal["OnRootMismatch", "Always"] | None = Field(
        default=None, description="When the volumes' ownership is changed to fsGroup."
    )
    supplemental_groups: list[int] | None = Field(
        default=None, description="Extra GIDs of every container's first process."
    )
    supplemental_groups_policy: Literal["Merge", "Strict"] | None = Field(
        default=None, description="Whether the image's /etc/group memberships are added (Merge) or not (Strict)."
    )
    sysctls: list[Sysctl] | None = Field(default=None, description="Namespaced sysctls of the pod.")
    se_linux_change_policy: Literal["MountOption", "Recursive"] | None = Field(
        default=None, description="How the SELinux label is applied to volumes."
    )


class ContainerSecurityContext(_CommonSecurity):
    """Security attributes of the proxy container (core/v1 SecurityContext). Each field set here replaces the
    operator's restricted default of the same name (e.g. runAsUser for a platform's UID range); fields not set keep
    it (read-only root, no privilege escalation, all capabilities dropped, RuntimeDefault seccomp, UID 65532)."""

    allow_privilege_escalation: bool | None = Field(default=None, description="Allow setuid gains (no_new_privs).")
    capabilities: Capabilities | None = Field(default=None, description="Linux capabilities to add or drop.")
    privileged: bool | None = Field(default=None, description="Run privileged (the node's full access).")
    proc_mount: Literal["Default", "Unmasked"] | None = Field(default=None, description="/proc mount type.")
    read_only_root_filesystem: bool | None = Field(default=None, description="Mount the root filesystem read-only.")


class KeyToPath(CoreV1):
    """A key of a ConfigMap or Secret projected to a file."""

    key: str = Field(min_length=1, max_length=253, description="The key.")
    path: str = Field(min_length=1, pattern=r"^[^/]", description="Relative file path the key is written to.")
    mode: int | None = FILE_MODE


class ConfigMapVolumeSource(CoreV1):
    """Files from a ConfigMap in the Gateway's namespace (e.g. a corporate CA bundle)."""

    name: str = Field(pattern=DNS_LABEL, description="Name of the ConfigMap.")
    items: list[KeyToPath] | None = Field(default=None, description="Keys to project; unset: every key.")
    default_mode: int | None = FILE_MODE
    optional: bool | None = Field(default=None, description="Start even if the ConfigMap or a key is missing.")


class SecretVolumeSource(CoreV1):
    """Files from a Secret in the Gateway's namespace."""

    secret_name: str = Field(pattern=DNS_LABEL, description="Name of the Secret.")
    items: list[KeyToPath] | None = Field(default=None, description="Keys to project; unset: every key.")
    default_mode: int | None = FILE_MODE
    optional: bool | None = Field(default=None, description="Start even if the Secret or a key is missing.")


class EmptyDirVolumeSource(CoreV1):
    """Scratch space that lives as long as the pod."""

    medium: Literal["", "Memory"] | None = Field(default=None, description="Memory: tmpfs; unset: node disk.")
    size_limit: str | None = Field(
        default=None, pattern=r"^[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?$", description="Size cap."
    )


class PersistentVolumeClaimVolumeSource(CoreV1):
    """A PersistentVolumeClaim in the Gateway's namespace."""

    claim_name: str = Field(pattern=r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$", description="Name of the claim.")
    read_only: bool | None = Field(default=None, description="Mount the claim read-only.")


class LocalObjectReference(CoreV1):
    """A Secret in the Gateway's namespace, by name."""

    name: str = Field(pattern=DNS_LABEL, description="Name of the Secret.")


class CSIVolumeSource(CoreV1):
    """A volume of a CSI driver, e.g. the Secrets Store CSI driver's secrets-store.csi.k8s.io."""

    driver: str = Field(min_length=1, max_length=63, description="Name of the CSI driver.")
    read_only: bool | None = Field(default=None, description="Mount read-only.")
    fs_type: str | None = Field(default=None, description="Filesystem type, e.g. ext4.")
    volume_attributes: dict[str, str] | None = Field(default=None, description="Driver-specific attributes.")
    node_publish_secret_ref: LocalObjectReference | None = Field(
        default=None, description="Secret passed to the driver's NodePublishVolume call."
    )


class ObjectFieldSelector(CoreV1):
    """A field of the pod."""

    field_path: str = Field(min_length=1, description="Path of the field, e.g. metadata.labels.")
    api_version: str | None = Field(default=None, description="Schema version of fieldPath; default v1.")


class ResourceFieldSelector(CoreV1):
    """A resource limit or request of the proxy container."""

    resource: str = Field(min_length=1, description="e.g. limits.memory.")
    container_name: str | None = Field(default=None, description="Container; only proxy exists.")
    divisor: str | None = Field(default=None, description="Output unit, e.g. 1Mi.")


class DownwardAPIVolumeFile(CoreV1):
    """A file holding a field of the pod."""

    path: str = Field(min_length=1, pattern=r"^[^/]", description="Relative file path.")
    field_ref: ObjectFieldSelector | None = Field(default=None, description="A pod field.")
    resource_field_ref: ResourceFieldSelector | None = Field(default=None, description="A container resource.")
    mode: int | None = FILE_MODE


class DownwardAPIVolumeSource(CoreV1):
    """Files holding fields of the pod (labels, annotations, resources)."""

    items: list[DownwardAPIVolumeFile] | None = Field(default=None, description="The files.")
    default_mode: int | None = FILE_MODE


class ServiceAccountTokenProjection(CoreV1):
    """A token of the pod's ServiceAccount for an audience (e.g. a cloud's workload identity or Vault)."""

    path: str = Field(min_length=1, pattern=r"^[^/]", description="Relative file path of the token.")
    audience: str | None = Field(default=None, description="Intended audience of the token.")
    expiration_seconds: int | None = Field(default=None, ge=600, description="Requested lifetime (at least 600).")


class ConfigMapProjection(CoreV1):
    """Keys of a ConfigMap in a projected volume."""

    name: str = Field(pattern=DNS_LABEL, description="Name of the ConfigMap.")
    items: list[KeyToPath] | None = Field(default=None, description="Keys to project; unset: every key.")
    optional: bool | None = Field(default=None, description="Start even if the ConfigMap or a key is missing.")


class SecretProjection(CoreV1):
    """Keys of a Secret in a projected volume."""

    name: str = Field(pattern=DNS_LABEL, description="Name of the Secret.")
    items: list[KeyToPath] | None = Field(default=None, description="Keys to project; unset: every key.")
    optional: bool | None = Field(default=None, description="Start even if the Secret or a key is missing.")


class VolumeProjection(CoreV1):
    """One source of a projected volume (exactly one of its fields). No clusterTrustBundle: behind a feature gate
    most clusters leave off, where the API server would silently drop it; trust-manager and the like publish bundles
    as ConfigMaps."""

    config_map: ConfigMapProjection | None = Field(default=None, description="Keys of a ConfigMap.")
    secret: SecretProjection | None = Field(default=None, description="Keys of a Secret.")
    downward_api: DownwardAPIVolumeSource | None = Field(
        default=None, alias="downwardAPI", description="Fields of the pod."
    )
    service_account_token: ServiceAccountTokenProjection | None = Field(
        default=None, description="A ServiceAccount token."
    )

    @model_validator(mode="after")
    def _one_source(self) -> VolumeProjection:
        if sum(getattr(self, f) is not None for f in type(self).model_fields) != 1:
            raise ValueError("set exactly one of configMap, secret, downwardAPI, serviceAccountToken")
        return self


class ProjectedVolumeSource(CoreV1):
    """Several sources (ConfigMaps, Secrets, pod fields, tokens) in one directory."""

    sources: list[VolumeProjection] = Field(min_length=1, max_length=32, description="The sources.")
    default_mode: int | None = FILE_MODE


VOLUME_SOURCES = ("configMap", "secret", "emptyDir", "persistentVolumeClaim", "csi", "downwardAPI", "projected")


class Volume(CoreV1):
    """An extra volume of the proxy pods: a name and exactly one source. The operator's own volumes (config, policy,
    tmp, prometheus) are not available under these names."""

    name: str = Field(pattern=DNS_LABEL, max_length=63, description="Volume name, referenced by volumeMounts.")
    config_map: ConfigMapVolumeSource | None = Field(default=None, description="Files from a ConfigMap.")
    secret: SecretVolumeSource | None = Field(default=None, description="Files from a Secret.")
    empty_dir: EmptyDirVolumeSource | None = Field(default=None, description="Scratch space of the pod's lifetime.")
    persistent_volume_claim: PersistentVolumeClaimVolumeSource | None = Field(
        default=None, description="A PersistentVolumeClaim."
    )
    csi: CSIVolumeSource | None = Field(default=None, description="A CSI driver's volume.")
    downward_api: DownwardAPIVolumeSource | None = Field(
        default=None, alias="downwardAPI", description="Fields of the pod as files."
    )
    projected: ProjectedVolumeSource | None = Field(default=None, description="Several sources in one directory.")

    @model_validator(mode="after")
    def _one_source(self) -> Volume:
        if sum(getattr(self, f) is not None for f in type(self).model_fields if f != "name") != 1:
            raise ValueError(f"volume {self.name}: set exactly one of {', '.join(VOLUME_SOURCES)}")
        return self


class VolumeMount(CoreV1):
    """Where one of spec.pod.volumes appears in the proxy container."""

    name: str = Field(pattern=DNS_LABEL, max_length=63, description="Name of a volume in spec.pod.volumes.")
    mount_path: str = Field(
        pattern=MOUNT_PATH,
        max_length=1024,
        description="Absolute path in the container, e.g. /etc/ssl/certs/corp-ca.crt (with subPath); not at, under "
        f"or above the operator's mounts ({', '.join(OPERATOR_MOUNTS.values())}).",
    )
    sub_path: str | None = Field(
        default=None, pattern=r"^[^/]", description="File or directory within the volume to mount instead of its root."
    )
    sub_path_expr: str | None = Field(
        default=None, pattern=r"^[^/]", description="subPath with $(VAR) expanded from the container's environment."
    )
    read_only: bool | None = Field(default=None, description="Mount read-only.")
    recursive_read_only: Literal["Disabled", "IfPossible", "Enabled"] | None = Field(
        default=None, description="Make submounts read-only too (with readOnly)."
    )
    mount_propagation: Literal["None", "HostToContainer", "Bidirectional"] | None = Field(
        default=None, description="How mounts propagate between host and container."
    )

    @field_validator("mount_path")
    @classmethod
    def _normalised(cls, value: str) -> str:
        if re.search(DOT_SEGMENT, value):
            raise ValueError("mountPath must not contain . or .. segments")
        return value
