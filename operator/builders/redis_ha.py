"""The managed Redis with high availability (spec.redis.highAvailability): a StatefulSet whose every pod runs a Redis
data node and a Redis Sentinel, a headless Service giving each pod a stable name, and a PodDisruptionBudget.

Failover is Redis's own: the sentinels agree that the primary is down, promote a replica and repoint the others.
kubegate adds only what a pod needs at start, in ``START_SCRIPT`` (run by both containers): whom to follow. Pods
are addressed by name (``<pod>.<gateway>-redis-nodes.<ns>.svc``; Redis's ``replica-announce-ip`` and Sentinel's
``announce-hostnames``), because a pod's IP changes when it is rescheduled and Sentinel would then keep monitoring
an address nobody answers on.

Everything the script reads comes from its environment, so the tests run the rendered containers as local
processes with loopback addresses and ports in place of the pod names (tests/dataplane/test_managed_redis_ha.py).
"""

from __future__ import annotations

from typing import Any

from gateway_operator.builders.common import redis_name, redis_secret_name
from gateway_operator.builders.trust import REDIS_PASSWORD_FIELD
from gateway_operator.crd import models as crd

MASTER_NAME = "kubegate"  # the name the sentinels monitor the primary under
REDIS_PORT, SENTINEL_PORT = 6379, 26379
# How long the primary must be silent before the sentinels fail it over. Redis's default is 30 s; 5 s keeps the
# refusal window of a lost primary well under 10 s (docs/redis.md) while a GC pause or a slow fsync of a few
# hundred milliseconds never triggers a failover.
DOWN_AFTER_MS = 5000
# Redis's default is 3 minutes: how long before a failover that stalled (a replica that never took over) is retried.
FAILOVER_TIMEOUT_MS = 30000
# Sentinel holds a few connections and its view of the group: a small, fixed size (Guaranteed QoS like the data
# node, so the pod is not the first evicted under node pressure).
SENTINEL_RESOURCES = {"memory": "64Mi", "cpu": "100m"}
CONF_DIR = "/conf"  # emptyDir: the data node's generated config (it holds the password, so not in argv)
DATA_DIR = "/data"  # the claim (or an emptyDir): the data node's AOF and the sentinel's own config, which it
# rewrites on every failover, so a pod that restarts remembers who the primary was

START_SCRIPT = r"""
# $1: redis or sentinel. Decides whom this pod follows, writes the config, execs the server; Sentinel does the rest.
set -eu
cli() {  # host:port command...: a peer that does not answer within 2 s counts as absent
  addr="$1"; shift
  REDISCLI_AUTH="$REDIS_PASSWORD" timeout 2 redis-cli -h "${addr%:*}" -p "${addr##*:}" "$@" 2>/dev/null
}
from_sentinels() {  # the primary the other pods' sentinels name
  for s in $KG_SENTINELS; do
    [ "$s" = "$KG_SELF_SENTINEL" ] && continue
    out=$(cli "$s" SENTINEL get-master-addr-by-name "$KG_MASTER") || continue
    host=$(printf '%s\n' "$out" | sed -n 1p); port=$(printf '%s\n' "$out" | sed -n 2p)
    case "$port" in ''|*[!0-9]*) continue ;; esac
    [ -n "$host" ] && { echo "$host:$port"; return 0; }
  done
  return 1
}
from_own_sentinel() {  # the primary this pod's sentinel last knew (its config, rewritten on each failover)
  [ -f "$KG_DATA/sentinel.conf" ] || return 1
  line=$(grep "^sentinel monitor $KG_MASTER " "$KG_DATA/sentinel.conf" | tail -n 1) || return 1
  set -- $line
  [ $# -ge 5 ] && echo "$4:$5"
}
from_roles() {  # a peer data node that says it is the primary
  for n in $KG_NODES; do
    [ "$n" = "$KG_SELF" ] && continue
    [ "$(cli "$n" ROLE | sed -n 1p)" = master ] && { echo "$n"; return 0; }
  done
  return 1
}
primary() {  # in order of authority; a group that never ran starts on the first pod
  from_sentinels || from_own_sentinel || from_roles || { set -- $KG_NODES; echo "$1"; }
}
peers_hold_data() {  # a peer replica that has replicated something (this node starting empty would wipe it)
  for n in $KG_NODES; do
    [ "$n" = "$KG_SELF" ] && continue
    offset=$(cli "$n" INFO replication | tr -d '\r' | sed -n 's/^master_repl_offset://p')
    case "$offset" in ''|0|*[!0-9]*) ;; *) return 0 ;; esac
  done
  return 1
}
umask 077
p=$(primary)
if [ "$1" = sentinel ]; then
  conf="$KG_DATA/sentinel.conf"
  myid=""
  if [ -f "$conf" ]; then myid=$(sed -n 's/^sentinel myid //p' "$conf" | tail -n 1); fi
  {
    echo "port ${KG_SELF_SENTINEL##*:}"
    echo "bind $KG_BIND"
    echo "dir $KG_DATA"
    echo "sentinel resolve-hostnames yes"
    echo "sentinel announce-hostnames yes"
    echo "sentinel announce-ip ${KG_SELF_SENTINEL%:*}"
    echo "sentinel announce-port ${KG_SELF_SENTINEL##*:}"
    echo "requirepass \"$REDIS_PASSWORD\""
    if [ -n "$myid" ]; then echo "sentinel myid $myid"; fi
    echo "sentinel monitor $KG_MASTER ${p%:*} ${p##*:} $KG_QUORUM"
    # The other pods as known replicas: a sentinel that restarts while the primary is down would otherwise know no
    # replica (it learns them from the primary's INFO), and, elected to lead the failover, abort it for want of one.
    for n in $KG_NODES; do
      if [ "$n" != "$p" ]; then echo "sentinel known-replica $KG_MASTER ${n%:*} ${n##*:}"; fi
    done
    echo "sentinel auth-pass $KG_MASTER \"$REDIS_PASSWORD\""
    echo "sentinel down-after-milliseconds $KG_MASTER $KG_DOWN_AFTER_MS"
    echo "sentinel failover-timeout $KG_MASTER $KG_FAILOVER_TIMEOUT_MS"
    echo "sentinel parallel-syncs $KG_MASTER 1"
  } > "$conf.new"
  mv "$conf.new" "$conf"
  exec redis-server "$conf" --sentinel
fi
# A primary that comes back without its data (no append-only file: persistence off, or a lost volume) before the
# sentinels noticed it was gone would be followed by its replicas, which would then drop everything. Wait until
# the sentinels have promoted one of them instead.
while [ "$p" = "$KG_SELF" ] && [ ! -d "$KG_DATA/appendonlydir" ] && peers_hold_data; do
  echo "kubegate: starting without data while the sentinels still name this pod the primary; waiting for a failover"
  sleep 2
  p=$(primary)
done
{
  echo "port ${KG_SELF##*:}"
  echo "bind $KG_BIND"
  echo "dir $KG_DATA"
  echo "requirepass \"$REDIS_PASSWORD\""
  echo "masterauth \"$REDIS_PASSWORD\""
  echo "replica-announce-ip ${KG_SELF%:*}"
  echo "replica-announce-port ${KG_SELF##*:}"
  printf '%s\n' "$KG_REDIS_CONF"
  if [ "$p" != "$KG_SELF" ]; then echo "replicaof ${p%:*} ${p##*:}"; fi
} > "$KG_CONF/redis.conf"
exec redis-server "$KG_CONF/redis.conf"
""".strip()


def nodes_service_name(gateway: str) -> str:
    """The headless Service that gives each managed Redis pod its DNS name."""
    return f"{gateway}-redis-nodes"


def node_host(gateway: str, namespace: str, ordinal: int) -> str:
    return f"{redis_name(gateway)}-{ordinal}.{nodes_service_name(gateway)}.{namespace}.svc"


def quorum(replicas: int) -> int:
    """Sentinels that must agree the primary is down: a majority, so a partitioned minority never fails over."""
    return replicas // 2 + 1


def sentinel_address(gateway: str, namespace: str, ha: crd.RedisHighAvailabilitySpec) -> str:
    """The proxies' and the operator's address of the group (gateway_plugins.policy.redis_client), without
    credentials; the sentinels require the same password as the data nodes."""
    hosts = ",".join(f"{node_host(gateway, namespace, i)}:{SENTINEL_PORT}" for i in range(ha.replicas))
    return f"redis+sentinel://{hosts}/{MASTER_NAME}?sentinel_auth=1"


def config_lines(settings: list[tuple[str, str]]) -> str:
    """redis.conf lines of (directive, value) pairs; an empty value is written "" (``save ""``)."""
    return "\n".join(f"{key} {value if value else chr(34) * 2}" for key, value in settings)


def start_env(gateway: str, namespace: str, ha: crd.RedisHighAvailabilitySpec, settings: str) -> list[dict[str, Any]]:
    """The script's environment; ``$(POD_NAME)`` is expanded by the kubelet from the variable before it."""
    nodes = [node_host(gateway, namespace, i) for i in range(ha.replicas)]
    self_host = f"$(POD_NAME).{nodes_service_name(gateway)}.{namespace}.svc"
    plain = {
        "KG_SELF": f"{self_host}:{REDIS_PORT}",
        "KG_SELF_SENTINEL": f"{self_host}:{SENTINEL_PORT}",
        "KG_NODES": " ".join(f"{h}:{REDIS_PORT}" for h in nodes),
        "KG_SENTINELS": " ".join(f"{h}:{SENTINEL_PORT}" for h in nodes),
        "KG_MASTER": MASTER_NAME,
        "KG_QUORUM": str(quorum(ha.replicas)),
        "KG_DOWN_AFTER_MS": str(DOWN_AFTER_MS),
        "KG_FAILOVER_TIMEOUT_MS": str(FAILOVER_TIMEOUT_MS),
        "KG_BIND": "* -::*",
        "KG_DATA": DATA_DIR,
        "KG_CONF": CONF_DIR,
        "KG_REDIS_CONF": settings,
    }
    return [
        {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        *({"name": k, "value": v} for k, v in plain.items()),
        {
            "name": "REDIS_PASSWORD",
            "valueFrom": {"secretKeyRef": {"name": redis_secret_name(gateway), "key": REDIS_PASSWORD_FIELD}},
        },
    ]


def build_ha_containers(
    gateway: str,
    namespace: str,
    ha: crd.RedisHighAvailabilitySpec,
    image: str,
    settings: list[tuple[str, str]],
    resources: dict[str, str],
    security_context: dict[str, Any],
) -> list[dict[str, Any]]:
    env = start_env(gateway, namespace, ha, config_lines(settings))
    mounts = [{"name": "data", "mountPath": DATA_DIR}, {"name": "conf", "mountPath": CONF_DIR}]

    def container(role: str, port: int, size: dict[str, str]) -> dict[str, Any]:
        return {
            "name": role,
            "image": image,
            "command": ["sh", "-c", START_SCRIPT, "kubegate-redis", role],
            "env": env,
            "ports": [{"name": role, "containerPort": port}],
            "readinessProbe": {"tcpSocket": {"port": role}, "periodSeconds": 5},
            "resources": {"requests": dict(size), "limits": dict(size)},
            "securityContext": security_context,
            "volumeMounts": mounts,
        }

    return [container("redis", REDIS_PORT, resources), container("sentinel", SENTINEL_PORT, SENTINEL_RESOURCES)]


def ha_pod_extras(match_labels: dict[str, str]) -> dict[str, Any]:
    """Spread the pods over nodes (soft, so a small cluster still schedules them): one node lost, one pod lost."""
    return {
        "affinity": {
            "podAntiAffinity": {
                "preferredDuringSchedulingIgnoredDuringExecution": [
                    {
                        "weight": 100,
                        "podAffinityTerm": {
                            "topologyKey": "kubernetes.io/hostname",
                            "labelSelector": {"matchLabels": match_labels},
                        },
                    }
                ]
            }
        }
    }
