#!/usr/bin/env bash
# Sluice's local stack: real components on loopback only, each with its data under .stack/.
#
#   scripts/stack.sh install   install what is missing (MariaDB, tansu, osmem-server, the
#                              Python Confluent clients the interop tests use)
#   scripts/stack.sh up        install, then start whatever is not running (idempotent)
#   scripts/stack.sh down      stop the processes this script started (pid files)
#   scripts/stack.sh status    one line per component
#   scripts/stack.sh env       `export` lines with the URLs and credentials tests and the demo use
#   scripts/stack.sh config TABLE SERVER_ID STATE_DIR TOPIC_PREFIX
#                              a Sluice config for TABLE on this stack (benchmark drivers
#                              append their own sections)
#
# Environment:
#   SLUICE_BIN        sluice binary that serves the registry (default: cargo build --release)
#   SLUICE_STACK_DIR  data directory (default: <repo>/.stack)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
STACK=${SLUICE_STACK_DIR:-$ROOT/.stack}
# Its real path: the server records the paths of its files (the binlog index), so a stack
# started through a symlink (a git worktree sharing .stack) must not write the link's path.
mkdir -p "$STACK" && STACK=$(cd "$STACK" && pwd -P)
MARIADB_PORT=13306
KAFKA_PORT=19092
ES_PORT=19200
REGISTRY_PORT=18081
TANSU_VERSION=0.6.0
OSMEM_VERSION=0.1.6
CONFLUENT_KAFKA_VERSION=2.16.1
KAFKA_PYTHON_VERSION=3.0.12

# Credentials of the private, loopback-only dev database; not secrets.
CDC_USER=sluice
CDC_PASSWORD=sluice
ADMIN_USER=admin
ADMIN_PASSWORD=admin

export PATH="$HOME/.cargo/bin:$PATH"

log() { printf 'stack: %s\n' "$*" >&2; }
die() { printf 'stack: error: %s\n' "$*" >&2; exit 1; }

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

# --- installation -----------------------------------------------------------------------------

# Debian packages: the server, and what the build and tests need beside it (OpenSSL headers and
# pkg-config for the TLS crates, the openssl CLI for the TLS test's certificates).
DEBIAN_PACKAGES="mariadb-server libssl-dev pkg-config openssl"

install_debian() {
  local missing=""
  for p in $DEBIAN_PACKAGES; do
    dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"
  done
  [ -z "$missing" ] && return 0
  log "installing from Debian:$missing"
  export DEBIAN_FRONTEND=noninteractive
  # A dpkg hook on some images deletes downloaded .debs between runs, so the first attempt can
  # fail half-way; `apt-get -f install` and a retry recover.
  # shellcheck disable=SC2086
  as_root apt-get install -y -q $missing >/dev/null 2>&1 \
    || { as_root apt-get update -q >/dev/null && as_root apt-get install -y -q $missing >/dev/null 2>&1; } \
    || { as_root apt-get -f install -y -q >/dev/null 2>&1; as_root apt-get install -y -q $missing >/dev/null; } \
    || die "apt-get install$missing failed; run it by hand to see why"
}

tansu_bin() { command -v tansu 2>/dev/null || true; }

install_tansu() {
  if [ -n "$(tansu_bin)" ] && tansu --version 2>/dev/null | grep -q "$TANSU_VERSION"; then return 0; fi
  # The default build has no storage engine (only null://); SQLite storage needs these features.
  # The binary lands in ~/.cargo/bin, outside the repo, so it builds once per machine.
  log "building tansu $TANSU_VERSION with SQLite storage (once per machine, 8-16 min on 2 cores)"
  cargo install tansu --version "$TANSU_VERSION" --locked --features dynostore,libsql --quiet \
    || die "cargo install tansu failed"
}

osmem_bin() {
  python3 -c 'import osmem_server; print(osmem_server.resolve_binary())' 2>/dev/null || true
}

install_osmem() {
  [ -n "$(osmem_bin)" ] && return 0
  log "installing osmem-server $OSMEM_VERSION from PyPI"
  python3 -m pip install --quiet --disable-pip-version-check "osmem-server==$OSMEM_VERSION" \
    || die "pip install osmem-server failed"
}

install_python_clients() {
  python3 -c "import sys, confluent_kafka, kafka
from confluent_kafka.schema_registry.avro import AvroDeserializer
sys.exit(confluent_kafka.__version__ != '$CONFLUENT_KAFKA_VERSION'
         or kafka.__version__ != '$KAFKA_PYTHON_VERSION')" 2>/dev/null && return 0
  # Third-party clients for the interop tests (tests/interop/): Confluent's, and kafka-python
  # for the Java client's key partitioner.
  log "installing confluent-kafka $CONFLUENT_KAFKA_VERSION (with its Avro and registry extras) and kafka-python $KAFKA_PYTHON_VERSION from PyPI"
  python3 -m pip install --quiet --disable-pip-version-check \
    "confluent-kafka[avro,schemaregistry]==$CONFLUENT_KAFKA_VERSION" \
    "kafka-python==$KAFKA_PYTHON_VERSION" \
    || die "pip install of the Python Kafka clients failed"
}

sluice_bin() {
  if [ -n "${SLUICE_BIN:-}" ]; then
    [ -x "$SLUICE_BIN" ] || die "SLUICE_BIN=$SLUICE_BIN is not an executable"
    echo "$SLUICE_BIN"
    return
  fi
  (cd "$ROOT" && cargo build --release --quiet --bin sluice) || die "cargo build of sluice failed"
  echo "$ROOT/target/release/sluice"
}

install_all() {
  install_debian
  install_osmem
  install_python_clients
  install_tansu
}

# --- processes --------------------------------------------------------------------------------

pid_alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_for() { # name timeout_s command...
  local name=$1 timeout=$2; shift 2
  local deadline=$((SECONDS + timeout))
  until "$@"; do
    [ $SECONDS -lt $deadline ] || die "$name did not become ready in ${timeout}s; see its log under $STACK"
    sleep 0.1
  done
}

spawn() { # dir name command... : detached from the caller, so it outlives the script and tests
  local dir=$1 name=$2; shift 2
  setsid nohup "$@" >"$dir/$name.log" 2>&1 </dev/null 9>&- &
  echo $! >"$dir/$name.pid"
}

mariadb_cli() { mariadb --no-defaults --socket="$STACK/mariadb/mysqld.sock" -uroot "$@"; }

start_mariadb() {
  local d=$STACK/mariadb
  if pid_alive "$d/mariadbd.pid"; then return 0; fi
  port_open $MARIADB_PORT && die "port $MARIADB_PORT is taken by a process this script did not start"
  mkdir -p "$d"
  if [ ! -d "$d/data/mysql" ]; then
    log "initialising MariaDB data dir"
    mariadb-install-db --no-defaults --datadir="$d/data" --user="$(id -un)" \
      --auth-root-authentication-method=normal --skip-test-db >"$d/install.log" 2>&1 \
      || die "mariadb-install-db failed; see $d/install.log"
  fi
  log "starting MariaDB on 127.0.0.1:$MARIADB_PORT"
  local mariadbd
  mariadbd=$(command -v mariadbd || echo /usr/sbin/mariadbd)
  # --no-defaults leaves character_set_server=latin1, so utf8mb4 is declared explicitly.
  spawn "$d" mariadbd "$mariadbd" --no-defaults --user="$(id -un)" --datadir="$d/data" \
    --port=$MARIADB_PORT --bind-address=127.0.0.1 --socket="$d/mysqld.sock" \
    --pid-file="$d/mariadbd.server.pid" --log-error="$d/error.log" \
    --log-bin="$d/data/binlog" --binlog-format=ROW --binlog-row-image=FULL \
    --binlog-row-metadata=FULL --server-id=1 --max-allowed-packet=64M \
    --character-set-server=utf8mb4 --collation-server=utf8mb4_general_ci \
    --skip-name-resolve --innodb-flush-log-at-trx-commit=2
  wait_for MariaDB 120 mariadb-admin --no-defaults --socket="$d/mysqld.sock" -uroot ping --silent &>/dev/null
  mariadb_cli <<SQL
CREATE USER IF NOT EXISTS '$CDC_USER'@'%' IDENTIFIED BY '$CDC_PASSWORD';
GRANT SELECT, REPLICATION SLAVE, REPLICATION CLIENT ON *.* TO '$CDC_USER'@'%';
-- The signal table of incremental snapshots (\`sluice setup\` creates it).
GRANT CREATE, INSERT, UPDATE ON \`sluice\`.* TO '$CDC_USER'@'%';
CREATE USER IF NOT EXISTS '$ADMIN_USER'@'%' IDENTIFIED BY '$ADMIN_PASSWORD';
GRANT ALL PRIVILEGES ON *.* TO '$ADMIN_USER'@'%' WITH GRANT OPTION;
SQL
}

start_tansu() {
  local d=$STACK/tansu
  if pid_alive "$d/tansu.pid"; then return 0; fi
  port_open $KAFKA_PORT && die "port $KAFKA_PORT is taken by a process this script did not start"
  mkdir -p "$d"
  log "starting tansu on 127.0.0.1:$KAFKA_PORT (SQLite storage)"
  # memory:// loses messages when a consumer group resumes mid-batch, so SQLite.
  # The sqlite:// path must be relative to the working directory: an absolute one is doubled.
  (cd "$d" && export RUST_LOG=${TANSU_LOG:-warn} && spawn "$d" tansu "$(tansu_bin)" broker \
    --listener-url "tcp://127.0.0.1:$KAFKA_PORT" \
    --advertised-listener-url "tcp://127.0.0.1:$KAFKA_PORT" \
    --storage-engine "sqlite://tansu.db")
  wait_for tansu 120 port_open $KAFKA_PORT
}

start_osmem() {
  local d=$STACK/osmem
  if pid_alive "$d/osmem.pid"; then return 0; fi
  port_open $ES_PORT && die "port $ES_PORT is taken by a process this script did not start"
  mkdir -p "$d"
  log "starting osmem-server on 127.0.0.1:$ES_PORT"
  spawn "$d" osmem "$(osmem_bin)" -addr "127.0.0.1:$ES_PORT" -no-stdin-watch
  wait_for osmem-server 120 curl -fs -o /dev/null "http://127.0.0.1:$ES_PORT/"
}

start_registry() {
  local d=$STACK/registry bin stamp
  # A registry started from an older build serves an older API: when SLUICE_BIN names a
  # different or rebuilt binary (tests do), restart it.
  if pid_alive "$d/registry.pid"; then
    [ -z "${SLUICE_BIN:-}" ] && return 0
    [ "$(cat "$d/binary" 2>/dev/null)" = "$(stat -c '%n %Y' "$SLUICE_BIN")" ] && return 0
    stop "$d" registry
  fi
  bin=$(sluice_bin)
  stamp=$(stat -c '%n %Y' "$bin")
  port_open $REGISTRY_PORT && die "port $REGISTRY_PORT is taken by a process this script did not start"
  mkdir -p "$d"
  log "starting sluice registry on 127.0.0.1:$REGISTRY_PORT"
  spawn "$d" registry "$bin" registry --listen "127.0.0.1:$REGISTRY_PORT" --data "$d/data"
  echo "$stamp" > "$d/binary"
  wait_for "sluice registry" 120 curl -fs -o /dev/null "http://127.0.0.1:$REGISTRY_PORT/subjects"
}

stop() { # dir name
  local pidfile=$1/$2.pid
  pid_alive "$pidfile" || { rm -f "$pidfile"; return 0; }
  local pid
  pid=$(cat "$pidfile")
  log "stopping $2 (pid $pid)"
  kill "$pid" 2>/dev/null || true
  for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$pid" 2>/dev/null || true
  rm -f "$pidfile"
}

status_line() { # name pidfile port
  if pid_alive "$2"; then printf '%-10s running  pid %-8s 127.0.0.1:%s\n' "$1" "$(cat "$2")" "$3"
  else printf '%-10s stopped\n' "$1"; fi
}

print_env() {
  cat <<ENV
export SLUICE_STACK_MYSQL_HOST=127.0.0.1
export SLUICE_STACK_MYSQL_PORT=$MARIADB_PORT
export SLUICE_STACK_MYSQL_USER=$CDC_USER
export SLUICE_STACK_MYSQL_PASSWORD=$CDC_PASSWORD
export SLUICE_STACK_MYSQL_ADMIN_USER=$ADMIN_USER
export SLUICE_STACK_MYSQL_ADMIN_PASSWORD=$ADMIN_PASSWORD
export SLUICE_STACK_KAFKA_BROKERS=127.0.0.1:$KAFKA_PORT
export SLUICE_STACK_REGISTRY_URL=http://127.0.0.1:$REGISTRY_PORT
export SLUICE_STACK_ELASTICSEARCH_URL=http://127.0.0.1:$ES_PORT
ENV
}

print_config() { # table server-id state-dir topic-prefix
  cat <<TOML
tables = ["$1"]
[source]
host = "127.0.0.1"
port = $MARIADB_PORT
user = "$CDC_USER"
password = "$CDC_PASSWORD"
server_id = $2
state_dir = "$3"
[kafka]
brokers = "127.0.0.1:$KAFKA_PORT"
topic_prefix = "$4"
[registry]
url = "http://127.0.0.1:$REGISTRY_PORT"
[elasticsearch]
url = "http://127.0.0.1:$ES_PORT"
TOML
}

cmd=${1:-}
mkdir -p "$STACK"
case "$cmd" in
  install)
    install_all ;;
  up)
    # One `up` at a time: tests in parallel processes may all ask for the stack.
    exec 9>"$STACK/.lock"
    flock 9
    install_all
    start_mariadb
    start_tansu
    start_osmem
    start_registry
    ;;
  down)
    stop "$STACK/registry" registry
    stop "$STACK/osmem" osmem
    stop "$STACK/tansu" tansu
    stop "$STACK/mariadb" mariadbd
    ;;
  status)
    status_line mariadb "$STACK/mariadb/mariadbd.pid" $MARIADB_PORT
    status_line tansu "$STACK/tansu/tansu.pid" $KAFKA_PORT
    status_line osmem "$STACK/osmem/osmem.pid" $ES_PORT
    status_line registry "$STACK/registry/registry.pid" $REGISTRY_PORT
    ;;
  env)
    print_env ;;
  config)
    [ $# -eq 5 ] || die "usage: scripts/stack.sh config TABLE SERVER_ID STATE_DIR TOPIC_PREFIX"
    print_config "$2" "$3" "$4" "$5" ;;
  *)
    sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2 ;;
esac
