#!/usr/bin/env python3
"""Writes the reviewer head's training scenarios (benches/model/train/*.json): situation files in
the format of `aether model review FILE` (src/controller/review/file.rs), each labelled with the
verdict an operator expects.

Generated from templates with a fixed seed (deterministic), in wording written for this script:
the evaluation sets (benches/model/eval/dev and held-out) were written separately, by another
hand, and are never read here. 705 scenarios in 38 families (FAMILIES below): 27 where the log
lines, events or notes decide (18 reject: thirteen kinds of fault more copies cannot help, a crash
loop in the events, a warm-up after a deploy, a hold still in force, a peak announced ahead of a
scale-in, a job that must finish on a node; 9 approve: errors that are the overload itself, hours
old, harmless or fixed since, job summaries without failures, a hold that has passed, a peak that
calls for the scale-up, a supporting note, a finished job) and 11 where the numbers decide (plain
load up and down, forecast-only scale-in, a vetoed or flapping repeat, steps that over- or
undershoot the count the numbers need, drains that leave too few nodes, hot and cooled GPUs).
Each family's lines come in many styles (Java, Python, Go, Rust, Node.js, proxies, systemd and
kernel, JSON and logfmt, Kubernetes events), and most
scenarios carry healthy or noisy lines and unrelated notes besides the decisive one, so that no
error word alone decides. Balance: about 45% approve, 45% reject, 10% adjust; about 60% decided
by the text.

After them (files 705 on, from the same generator's later draws, so the first 705 stay byte for
byte), 250 scenarios in 10 twin families (TWIN_FAMILIES): pairs on the same numbers, with no risk
in them, whose words flip the verdict, against the head's habit of objecting to alarming words
alone: dependency errors that ended or go on, OOM kills before or after a memory raise, a fault an
operator's note calls fixed or not, windows (drills, pins, freezes, load tests) told by their end
or their length that have passed or are in force, an old veto whose reason is over or holds, an
open-ended hold a later note lifts or keeps, a spike of welcome or harmful load, a peak over or
coming before a scale-in, and warnings beside the fault that looks like them. In all 955 in 48
families.

After writing, every file is read back and checked against the situation format (fields, types,
allowed values, the proposal's numbers against its rule) and the counts per family, class and
text_decides are printed; a failed check exits 1.

usage: scripts/bench/make_training.py [OUT_DIR]      (default benches/model/train, regenerated)
       scripts/bench/make_training.py --check [DIR]  (only the check of the files there)
"""
import collections
import json
import math
import os
import re
import random
import shutil
import sys

CHECK_ONLY = len(sys.argv) > 1 and sys.argv[1] == "--check"
if CHECK_ONLY:
    sys.argv.pop(1)
OUT = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "..", "..", "benches", "model", "train")
rng = random.Random(21)

# ---------------------------------------------------------------------------------------------
# Names and fillers

APPS = [("store", "web"), ("store", "cart"), ("media", "encoder"), ("ml", "infer"),
        ("auth", "api"), ("search", "query"), ("chat", "gateway"), ("maps", "tiles"),
        ("mail", "sender"), ("data", "ingest"), ("vid", "transcode"), ("ads", "bidder"),
        ("pay", "ledger"), ("pay", "checkout"), ("geo", "router"), ("crm", "sync"),
        ("news", "feed"), ("photo", "thumbs"), ("iot", "collector"), ("bank", "statements"),
        ("game", "lobby"), ("ride", "dispatch"), ("docs", "render"), ("tix", "booking"),
        ("hr", "portal"), ("shop", "catalog"), ("fin", "risk"), ("edu", "quiz"),
        ("travel", "fares"), ("music", "stream"), ("llm", "embed"), ("social", "timeline")]
PEOPLE = ["ana", "raj", "mo", "lee", "kim", "sam", "uid:1000@n1", "ops-oncall", "priya.s",
          "jd", "marta", "@tomasz", "oncall-sre", "wei", "felix", "noor", "b.okafor", "yuki",
          "dmitri", "sre-bot", "carla (dba)", "hassan", "release-mgr", "ines", "pat"]
DBS = ["orders-db", "pg-main", "users-pg", "mysql-billing", "aurora-ledger", "pg-replica-2",
       "catalog-db", "mariadb-crm"]
CACHES = ["redis-sessions", "redis-0", "memcached-1", "cache-primary", "valkey-a"]
BROKERS = ["kafka-0", "kafka-2", "rabbitmq", "nats-1", "pulsar-broker-1", "sqs"]
BUCKETS = ["media-raw", "exports-prod", "ml-artifacts", "invoices", "thumbs-cache"]
VENDORS = ["stripe", "twilio", "sendgrid", "maps vendor", "openfx", "geoip provider",
           "payments partner", "sms gateway", "tax api"]
MODELS = ["resnet50", "bert-base", "ranker-v7", "embed-small", "whisper-med", "llama-8b-q4",
          "ctr-model", "fraud-gbm"]
WORDS = ["orders", "users", "invoices", "events", "sessions", "carts", "items", "payments"]
DAYS = ["2026-12-01", "2026-12-02", "2026-12-03", "2026-12-04", "2026-12-05"]


CUR_N = [3]  # the count of the slice being written, for instance numbers


def fill(t, app=None):
    """A template with its placeholders filled from fresh random values."""
    b, s = app or rng.choice(APPS)
    d = {
        "inst": f"{b}/{s}/{rng.randint(0, CUR_N[0] - 1)}",
        "svc": s, "bp": b, "slice": f"{b}/{s}", "host": f"{s}-{rng.choice('abcdefgh')}{rng.randint(1, 9)}",
        "ip": f"10.{rng.randint(0, 9)}.{rng.randint(0, 30)}.{rng.randint(2, 250)}",
        "port": rng.choice([5432, 3306, 6379, 9092, 5672, 4222, 8080, 8443, 9000, 11211, 27017]),
        "lport": rng.choice([8080, 8000, 3000, 9090, 50051, 8443, 7000]),
        "pid": rng.randint(300, 48000), "n": rng.randint(2, 9), "k": rng.randint(11, 99),
        "ms": rng.randint(8, 90), "slow": rng.randint(1800, 9000), "id": f"{rng.getrandbits(32):08x}",
        "req": f"req-{rng.getrandbits(24):06x}", "db": rng.choice(DBS), "cache": rng.choice(CACHES),
        "broker": rng.choice(BROKERS), "bucket": rng.choice(BUCKETS), "vendor": rng.choice(VENDORS),
        "model": rng.choice(MODELS), "word": rng.choice(WORDS), "pct": rng.randint(12, 88),
        "gib": rng.choice([1, 2, 4, 6, 8, 12]), "mib": rng.choice([128, 256, 512, 768, 1024]),
        "q": rng.choice([256, 512, 1000, 1024, 2048]), "w": rng.choice([16, 32, 64, 128]),
        "ver": f"{rng.randint(1, 4)}.{rng.randint(0, 30)}.{rng.randint(0, 9)}",
        "user": rng.choice(["svc_orders", "app", "reporting", "svc_" + s, "writer", "api_user"]),
        "line": rng.randint(3, 240), "code": rng.choice([500, 502, 503, 504]),
        "cnt": rng.randint(1200, 98000), "dev": rng.choice(["nvme0n1p2", "sda1", "xvdb", "vdb1"]),
        "mnt": rng.choice(["/var/lib/" + s, "/data", "/var/log", "/tmp", "/srv/" + s + "/cache"]),
        "ts": f"2026-12-0{rng.randint(1, 5)}T{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}:{rng.randint(0, 59):02d}Z",
        "hh": f"{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}:{rng.randint(0, 59):02d}",
        "tok": rng.choice(["API_KEY", "DATABASE_URL", "JWT_SECRET", "STRIPE_KEY", "S3_SECRET",
                           "SIGNING_KEY", "OAUTH_CLIENT_SECRET", "REDIS_PASSWORD"]),
        "cfg": rng.choice([f"/etc/{s}/config.yaml", f"/etc/{s}/app.toml", "config/production.json",
                           f"/srv/{s}/settings.ini", "/app/conf/application.yml"]),
        "flag": rng.choice(["--max-conns", "--listen", "--worker-count", "--cache-size",
                            "--region", "--log-fmt", "--threads", "--mode"]),
        "mig": f"{rng.randint(2021, 2026)}{rng.randint(1, 12):02d}{rng.randint(1, 28):02d}_{rng.choice(['add', 'drop', 'alter'])}_{rng.choice(WORDS)}",
        "col": rng.choice(["tenant_id", "created_at", "status_v2", "price_cents", "region"]),
        "dom": rng.choice(["api.partner.example", "auth.internal", "payments.vendor.example",
                           "s3.eu-west-1.example", "hooks.example.net", "id.corp.example"]),
        "gpu": rng.randint(0, 7), "who": rng.choice(PEOPLE), "days": rng.randint(1, 30), "exit": rng.choice([1, 2, 134, 137, 139, 255]),
        "path": rng.choice(["/api/v1/" + rng.choice(WORDS), "/checkout", "/search", "/v2/render",
                            "/graphql", "/healthz", "/api/items/" + str(rng.randint(1, 9999))]),
    }
    return t.format(**d)


def jline(**kw):
    return json.dumps(kw, separators=(",", ":"))


# ---------------------------------------------------------------------------------------------
# Log vocabularies. Reject: more copies cannot help. Templates take fill()'s placeholders.

OOM = [
    'Exception in thread "main" java.lang.OutOfMemoryError: Java heap space',
    "java.lang.OutOfMemoryError: Metaspace",
    "java.lang.OutOfMemoryError: unable to create native thread: possibly out of memory",
    "MemoryError: Unable to allocate {gib}.00 GiB for an array with shape (65536, 8192)",
    "MemoryError",
    "fatal error: runtime: out of memory",
    "runtime: out of memory: cannot allocate {mib}MB-byte block ({gib}GB in use)",
    "memory allocation of {mib}000000 bytes failed",
    "FATAL ERROR: Reached heap limit Allocation failed - JavaScript heap out of memory",
    "<--- Last few GCs ---> Mark-Compact (reduce) {mib}.1 -> {mib}.0 MB, allocation failure",
    "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate {gib}.00 GiB (GPU {gpu}; 0 bytes free)",
    "RuntimeError: CUDA error: out of memory while loading {model} weights",
    "cudaMalloc failed: out of memory (requested {mib} MiB on device {gpu})",
    "ERROR: failed to load {model}: not enough GPU memory ({gib} GiB needed, 1.2 GiB free)",
    "kernel: Memory cgroup out of memory: Killed process {pid} ({svc}) anon-rss:{mib}000kB",
    "kernel: Out of memory: Killed process {pid} ({svc}) total-vm:{mib}0000kB",
    "{svc}.service: A process of this unit has been killed by the OOM killer.",
    "{svc}.service: Failed with result 'oom-kill'.",
    "Container {svc} was OOMKilled (limit {mib}Mi), exit code 137",
    'Back-off restarting failed container {svc}: last state Terminated, reason OOMKilled',
    '{{"level":"fatal","msg":"out of memory","heap_mb":{mib},"limit_mb":{mib}}}',
    'level=fatal msg="cannot allocate arena" err="out of memory" size={gib}GiB',
    "thread 'main' panicked: memory allocation of {mib}000 bytes failed",
    "OpenBLAS blas_thread_init: pthread_create failed: Resource temporarily unavailable (out of memory)",
    "std::bad_alloc thrown while building index in {svc} worker",
    "ERROR [{svc}] startup aborted: heap {mib}m is too small for cache warm set ({gib}g)",
    "ResourceExhaustedError: OOM when allocating tensor with shape[{q},4096] on /gpu:{gpu}",
]
CONFIG = [
    "error: missing required environment variable {tok}",
    "KeyError: '{tok}'",
    "panic: open {cfg}: no such file or directory",
    "FileNotFoundError: [Errno 2] No such file or directory: '{cfg}'",
    "invalid configuration: unknown field 'max_conns' in {cfg} line {line}",
    "yaml: line {line}: mapping values are not allowed in this context ({cfg})",
    "Error: Cannot find module '/app/config/production.json'",
    "org.springframework.beans.factory.BeanCreationException: Could not resolve placeholder '{tok}'",
    "java.lang.IllegalStateException: required property 'spring.datasource.url' is not set",
    "thread 'main' panicked at src/config.rs:{line}: called `Result::unwrap()` on an `Err` value: missing field `listen_addr`",
    "Error: failed to parse {cfg}: expected '=' at line {line} column 7",
    "config error: value 'fast' is not valid for 'mode' (want one of: sync, async)",
    '{{"level":"error","msg":"secret not found","secret":"{svc}-db-credentials","ns":"prod"}}',
    'level=error msg="load config" err="open /run/secrets/{tok}: permission denied"',
    "Error: secret \"{svc}-tls\" not found (MountVolume.SetUp failed for volume \"certs\")",
    "CreateContainerConfigError: couldn't find key {tok} in Secret prod/{svc}-env",
    "pydantic_core.ValidationError: 1 validation error for Settings database_url Field required",
    "ValueError: invalid literal for int() with base 10: '' (env {tok})",
    "json.decoder.JSONDecodeError: Expecting ',' delimiter: line {line} column 3 ({cfg})",
    "FATAL: could not read key file /etc/{svc}/keys.pem: no such file",
    "nginx: [emerg] unknown directive \"proxy_pas\" in /etc/nginx/conf.d/{svc}.conf:{line}",
    "envoy: error initializing configuration '/etc/envoy/envoy.yaml': Unable to parse JSON as proto",
    "haproxy: [ALERT] parsing [/etc/haproxy/haproxy.cfg:{line}]: unknown keyword 'backnd'",
    "Error: ENOENT: no such file or directory, open '/app/.env.production'",
    "config validation failed: upstream_url must be an absolute URL, got '{svc}:8080'",
    "toml parse error at line {line}, column 1: duplicate key `port`",
    "IllegalArgumentException: No enum constant Region.eu_west",
]
BADFLAG = [
    "flag provided but not defined: {flag}",
    "error: unexpected argument '{flag}' found",
    "error: invalid value 'abc' for '{flag} <N>': invalid digit found in string",
    "usage: {svc} [-h] [--port PORT] ... {svc}: error: unrecognized arguments: {flag}=8",
    "{svc}: error: argument --threads: invalid int value: 'auto'",
    "Error: unknown flag: {flag}",
    "Unrecognized option: -XX:+UseZGCX  Error: Could not create the Java Virtual Machine.",
    "Invalid maximum heap size: -Xmx{gib}gb",
    "node: bad option: --max-old-space=4096",
    "invalid argument \"eu\" for \"--region\" flag: must be one of [us-east eu-west ap-south]",
    "fatal: option '{flag}' requires a value",
    "getopt: unrecognized option '{flag}'",
    "{svc}: invalid duration \"30\" for -timeout: missing unit in duration",
    "exec /app/{svc}: exec format error",
    "exec: \"--config\": executable file not found in $PATH",
    "OCI runtime create failed: exec: \"/bin/{svc}d\": stat /bin/{svc}d: no such file or directory",
    "Error: Invalid value for '--workers': 'x' is not a valid integer.",
    "gunicorn: error: unrecognized arguments: --worker-class=geventt",
    "uvicorn: Error: No such option: --reloads",
    'level=fatal msg="bad command line" err="both --listen and --socket given"',
    '{{"level":"fatal","msg":"invalid flag","flag":"{flag}","value":"-1"}}',
    "clap: error: the argument '--mode <MODE>' cannot be used multiple times",
    "java -jar: Error: Unable to access jarfile /app/{svc}-{ver}.jar",
    "python: can't open file '/app/mian.py': [Errno 2] No such file or directory",
    "standard_init_linux.go:228: exec user process caused: no such file or directory",
    "Error: Unknown command \"serv\" for \"{svc}\". Did you mean \"serve\"?",
]
MIGRATION = [
    "django.db.utils.ProgrammingError: column {word}.{col} does not exist",
    "ERROR: relation \"{word}_v2\" does not exist at character {k}",
    "FlywayException: Validate failed: Migration checksum mismatch for migration version {n}",
    "Liquibase: Migration failed for change set db/changelog/{mig}.xml",
    "alembic.util.exc.CommandError: Can't locate revision identified by '{id}'",
    "ActiveRecord::PendingMigrationError: Migrations are pending. Run bin/rails db:migrate",
    "migrate: Dirty database version {n}. Fix and force version.",
    "error: migration {mig} failed: duplicate key value violates unique constraint",
    "sqlx::migrate: migration {n} was previously applied but has been modified",
    "schema mismatch: expected version {k}, database is at {n}; refusing to start",
    "SchemaManagementException: Schema-validation: missing column [{col}] in table [{word}]",
    "psycopg.errors.UndefinedTable: relation \"{word}\" does not exist",
    "Error 1054 (42S22): Unknown column '{col}' in 'field list'",
    "prisma: Error P3009 migrate found failed migrations in the target database",
    'level=error msg="startup check failed" err="schema version {n} < required {k}"',
    '{{"level":"error","msg":"migration lock held","by":"{host}","since":"{ts}"}}',
    "knex: migration file \"{mig}.js\" failed: ER_DUP_FIELDNAME: Duplicate column name '{col}'",
    "sequelize: SequelizeDatabaseError: column \"{col}\" of relation \"{word}\" does not exist",
    "goose: ERROR {mig}.sql: failed to run SQL migration: syntax error at or near \"TABLE\"",
    "diesel: error: table `{word}` has no column named `{col}`",
    "mongo: document failed validation: schema v{n} required, found v{k}",
    "protobuf decode error: unknown wire type 7 for field {word} (client and server schemas differ)",
    "avro: reader schema v{n} incompatible with writer schema v{k} for topic {word}",
    "Could not find a migration with id {mig} in the ledger; refusing to boot",
    "ERROR: cannot cast type text to integer (migration {mig})",
    "pg_dump restore mismatch: table {word} has {n} columns, expected {k}",
]
DEPDOWN = [
    'psycopg2.OperationalError: connection to server at "{ip}", port 5432 failed: Connection refused',
    "dial tcp {ip}:6379: connect: connection refused",
    "Caused by: java.net.ConnectException: Connection refused ({broker}:9092)",
    "redis.exceptions.ConnectionError: Error 111 connecting to {cache}:6379. Connection refused.",
    "Error: connect ECONNREFUSED {ip}:{port}",
    "Error: getaddrinfo ENOTFOUND {db}.internal",
    "dial tcp: lookup {db}.prod.svc on 10.96.0.10:53: no such host",
    "dial tcp: lookup {cache}: i/o timeout (dns server {ip}:53 not answering)",
    "pika.exceptions.AMQPConnectionError: connection to rabbitmq:5672 refused",
    "nats: no servers available for connection",
    "org.apache.kafka.common.errors.TimeoutException: Topic {word} not present in metadata after 60000 ms",
    "[Producer clientId={svc}] Connection to node -1 ({broker}:9092) could not be established. Broker may not be available.",
    "com.mongodb.MongoTimeoutException: Timed out after 30000 ms while waiting to connect (mongo-0:27017 refused)",
    "sqlalchemy.exc.OperationalError: (pymysql.err.OperationalError) (2003, \"Can't connect to MySQL server on '{db}'\")",
    "botocore.exceptions.EndpointConnectionError: Could not connect to the endpoint URL: \"https://{bucket}.s3.example/\"",
    "S3: 503 SlowDown / ServiceUnavailable from object store for bucket {bucket}, all retries failed",
    "minio: dial tcp {ip}:9000: connect: no route to host",
    "upstream connect error or disconnect/reset before headers. reset reason: connection failure ({db})",
    "[error] connect() failed (111: Connection refused) while connecting to upstream, upstream: \"http://{ip}:{port}/\"",
    "haproxy: backend {db}_be has no server available!",
    'level=error msg="ping failed" dep={cache} err="EOF" attempts={n}',
    '{{"level":"error","msg":"dependency down","dep":"{db}","err":"connection reset by peer"}}',
    "Error: Redis connection to {cache}:6379 failed - connect ETIMEDOUT",
    "thread 'tokio-runtime-worker' panicked: failed to connect to {db}: Connection refused (os error 111)",
    "elasticsearch.exceptions.ConnectionError: ConnectionError(<urllib3 NewConnectionError: Connection refused>)",
    "grpc: addrConn.createTransport failed to connect to {{{ip}:50051}}: connection refused",
    "HikariPool-1 - Exception during pool initialization: Connection to {db}:5432 refused",
    "SERVFAIL resolving {db}.svc.cluster.local from coredns; upstream resolver unreachable",
]
DEPAUTH = [
    'FATAL: password authentication failed for user "{user}"',
    "java.sql.SQLException: Access denied for user '{user}'@'{ip}' (using password: YES)",
    "redis.exceptions.AuthenticationError: invalid username-password pair or user is disabled.",
    "NOAUTH Authentication required. (from {cache})",
    "WRONGPASS invalid username-password pair",
    "botocore.exceptions.ClientError: An error occurred (InvalidAccessKeyId) when calling PutObject",
    "S3 AccessDenied: Access Denied (bucket {bucket}, role {svc}-writer)",
    "org.apache.kafka.common.errors.SaslAuthenticationException: Authentication failed: Invalid username or password",
    "pika.exceptions.ProbableAuthenticationError: ACCESS_REFUSED - Login was refused",
    "MongoServerError: Authentication failed. (user {user} on admin)",
    "401 Unauthorized from {vendor}: api key revoked",
    "stripe.error.AuthenticationError: Invalid API Key provided: sk_live_****{k}",
    "Error: 403 Forbidden calling {dom}: token expired for client {svc}",
    "google.auth.exceptions.RefreshError: invalid_grant: Token has been expired or revoked.",
    "vault: permission denied reading secret/data/{svc}/db (token ttl expired)",
    'level=error msg="db login failed" user={user} err="pq: role \\"{user}\\" does not exist"',
    '{{"level":"error","msg":"auth to dependency failed","dep":"{db}","status":401}}',
    "ERROR 1045 (28000): Access denied for user '{user}'@'%'",
    "AADSTS7000215: Invalid client secret provided for app {svc}",
    "sasl: GSSAPI failure: Ticket expired (kafka {broker})",
    "nats: Authorization Violation",
    "elasticsearch: security_exception: unable to authenticate user [{user}]",
    "ldap: Invalid Credentials (49) binding as cn={user}",
    "thread 'main' panicked: db auth: error returned from database: password authentication failed",
    "Error: SMTP 535 5.7.8 Authentication credentials invalid ({vendor})",
    "OAuth2 token endpoint {dom} answered 400 invalid_client for {svc}",
]
CERT = [
    "x509: certificate has expired or is not yet valid: current time {ts} is after 2026-11-30T23:59:59Z",
    "x509: certificate signed by unknown authority",
    "javax.net.ssl.SSLHandshakeException: PKIX path building failed: unable to find valid certification path",
    "sun.security.validator.ValidatorException: certificate expired on {ts}",
    "ssl.SSLCertVerificationError: [SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: certificate has expired",
    "requests.exceptions.SSLError: HTTPSConnectionPool(host='{dom}', port=443): certificate verify failed",
    "Error: certificate has expired (code CERT_HAS_EXPIRED) calling https://{dom}",
    "Error: unable to verify the first certificate",
    "nginx: [emerg] cannot load certificate \"/etc/ssl/{svc}.crt\": PEM_read_bio_X509_AUX() failed",
    "SSL_do_handshake() failed (SSL: error:0A000086:certificate verify failed) while SSL handshaking to upstream",
    "envoy: TLS error: 268435581:SSL routines:OPENSSL_internal:CERTIFICATE_VERIFY_FAILED",
    "tls: failed to verify certificate: x509: certificate is valid for *.old.example, not {dom}",
    "rustls::Error: invalid peer certificate: Expired",
    "hyper::Error(Connect, Custom {{ kind: InvalidData, error: InvalidCertificate(Expired) }})",
    'level=error msg="tls handshake" peer={dom} err="remote error: tls: bad certificate"',
    '{{"level":"error","msg":"mTLS client cert rejected","peer":"{db}","reason":"expired"}}',
    "haproxy: Server {svc}_be/s1 is DOWN, reason: Layer6 invalid response, info: \"SSL handshake failure\"",
    "curl: (60) SSL certificate problem: certificate has expired ({dom})",
    "grpc: transport: authentication handshake failed: x509: certificate has expired",
    "Kafka SSL handshake failed: PKIX path validation failed: timestamp check failed ({broker})",
    "pq: SSL error: certificate verify failed (server cert for {db} expired {days}d ago)",
    "cert-manager: Certificate prod/{svc}-tls not Ready: renewal failed, ACME order invalid",
    "WARN->ERROR vendor {vendor} rotated its CA; our trust store lacks the new root",
    "java.security.cert.CertificateExpiredException: NotAfter: Mon Nov 30 23:59:59 UTC 2026",
    "OpenSSL: error:14094418:SSL routines:ssl3_read_bytes:tlsv1 alert unknown ca",
    "tls: peer {dom} presents a self-signed certificate; handshake refused",
]
DISK = [
    "OSError: [Errno 28] No space left on device: '{mnt}/tmp'",
    "write {mnt}/wal/000{k}.log: no space left on device",
    "java.io.IOException: No space left on device",
    "Error: ENOSPC: no space left on device, write",
    "PANIC: could not write to file \"pg_wal/xlogtemp.{pid}\": No space left on device",
    "kernel: EXT4-fs warning (device {dev}): ext4_dx_add_entry: Directory index full!",
    "kernel: XFS ({dev}): Filesystem has run out of free inodes",
    "{svc}.service: Failed to set up mount namespacing: No space left on device",
    "mkdir {mnt}/spool/{id}: no space left on device (inodes 100% used)",
    "df: {mnt} 100% used ({gib}.0G of {gib}.0G)",
    "kubelet: Evicted: The node was low on resource: ephemeral-storage. Container {svc} was using {gib}Gi",
    "Pod ephemeral local storage usage exceeds the total limit of containers {mib}Mi",
    "rocksdb: IO error: No space left on device While appending to file: {mnt}/{k}.sst",
    "kafka: Shutdown broker because all log dirs in {mnt} have failed (disk full)",
    "ERROR 1114 (HY000): The table '{word}' is full",
    "sqlite3.OperationalError: database or disk is full",
    "elasticsearch: flood stage disk watermark [95%] exceeded on {host}, all indices read-only",
    "thread 'main' panicked: failed to write snapshot: No space left on device (os error 28)",
    'level=error msg="flush failed" path={mnt} err="no space left on device"',
    '{{"level":"error","msg":"cannot write upload","path":"{mnt}/uploads","errno":"ENOSPC"}}',
    "docker: failed to register layer: write /var/lib/docker/overlay2/{id}: no space left on device",
    "journald: Failed to write entry, ignoring: No space left on device",
    "volume pvc-{id} is at 100% capacity; writes fail with EDQUOT",
    "tar: {mnt}/export-{k}.tar: Cannot write: No space left on device",
    "nginx: [crit] pwrite() \"/var/cache/nginx/client_temp/{k}\" failed (28: No space left on device)",
    "IOError: [Errno 122] Disk quota exceeded: '{mnt}/out'",
]
QUOTA = [
    "429 Too Many Requests from {vendor}: monthly quota exhausted, resets on the 1st",
    "stripe.error.RateLimitError: account-wide rate limit reached",
    "openai.RateLimitError: You exceeded your current quota, please check your plan and billing details",
    "Error 402 Payment Required from {vendor}: account suspended for unpaid invoice",
    "License check failed: {svc} enterprise license expired {days} days ago",
    "FATAL: license seats exhausted ({n}/{n} in use); new instances refuse to start",
    "googleapiclient.errors.HttpError: 403 Quota exceeded for quota metric 'Requests' of service maps",
    "AWS: LimitExceededException: Rate exceeded for SES daily sending quota",
    "twilio: 20429 Too many requests: account concurrency limit reached",
    "vendor {vendor} replied 'quota_exceeded' for key ****{k}; every call fails until midnight UTC",
    'level=error msg="upstream quota" vendor="{vendor}" remaining=0 reset="24h"',
    '{{"level":"error","msg":"api quota exhausted","vendor":"{vendor}","limit":{cnt},"used":{cnt}}}',
    "sendgrid: 429 daily send limit reached for this plan",
    "Error: free tier limit reached for geocoding (0 of {cnt} remaining)",
    "license server unreachable after grace period; running in locked mode, refusing requests",
    "HTTP 403 from {dom}: \"plan limit: {k} concurrent connections\"",
    "java.lang.IllegalStateException: License key invalid for {n} cores (licensed for 4)",
    "ERROR vendor SDK: TokenBucket empty and the account's hard cap is reached",
    "Quota 'CPUS' exceeded in region eu-west. Limit: {k}.0",
    "thread 'main' panicked: translation api: 429 quota exhausted for project {svc}",
    "RESOURCE_EXHAUSTED: Quota exceeded for aiplatform.googleapis.example/online_prediction_requests",
    "datadog: 403 API key over its custom-metrics allotment; metrics dropped",
    "Error: account {svc}-prod has reached its maximum number of connections to {vendor}",
    "sms gateway: credit balance 0.00, messages refused",
    "mapbox: 429 monthly tile request limit reached",
    "license: {svc} has {n} running copies, licence allows {n}; extra copies exit",
]
PORT = [
    "listen tcp :{lport}: bind: address already in use",
    "Error: listen EADDRINUSE: address already in use :::{lport}",
    "OSError: [Errno 98] Address already in use",
    "java.net.BindException: Address already in use (Bind failed) on port {lport}",
    "org.springframework.boot.web.server.PortInUseException: Port {lport} is already in use",
    "thread 'main' panicked: error binding to 0.0.0.0:{lport}: Address already in use (os error 98)",
    "nginx: [emerg] bind() to 0.0.0.0:80 failed (98: Address already in use)",
    "haproxy: [ALERT] Starting frontend http-in: cannot bind socket [0.0.0.0:{lport}]",
    "envoy: cannot bind '0.0.0.0:{lport}': Address already in use",
    "[ERROR] Connection in use: ('0.0.0.0', {lport}) (gunicorn, retrying in 1 second)",
    "uvicorn: [Errno 98] error while attempting to bind on address ('0.0.0.0', {lport})",
    'level=fatal msg="http server" err="listen tcp 0.0.0.0:{lport}: bind: address already in use"',
    '{{"level":"fatal","msg":"failed to listen","addr":":{lport}","err":"EADDRINUSE"}}',
    "grpc server: failed to listen on :50051: address already in use",
    "Port {lport} is held by pid {pid} (old {svc} did not exit); new copy aborts",
    "0/{n} nodes are available: {n} node(s) didn't have free ports for the requested pod ports.",
    "docker: Error response from daemon: Bind for 0.0.0.0:{lport} failed: port is already allocated",
    "systemd: {svc}.socket: Failed to listen on sockets: Address already in use",
    "redis: Could not create server TCP listening socket *:6379: bind: Address already in use",
    "Puma: Address already in use - bind(2) for \"0.0.0.0\" port {lport} (Errno::EADDRINUSE)",
    "Kestrel: Failed to bind to address http://[::]:{lport}: address already in use",
    "metrics exporter: bind :9100 failed, another exporter owns it; exiting",
    "hostPort {lport} already used on every node; copy {n} stays Pending",
    "Rails: A server is already running (pid: {pid}, file: /app/tmp/pids/server.pid)",
    "sidecar already listens on {lport}; app container exits: bind EADDRINUSE",
    "tokio: Os {{ code: 98, kind: AddrInUse, message: \"Address already in use\" }}",
]
SEGV = [
    "SIGSEGV: segmentation violation PC=0x{id} m=0 sigcode=1",
    "panic: runtime error: invalid memory address or nil pointer dereference",
    "panic: runtime error: index out of range [{n}] with length {n}",
    "thread 'main' panicked at src/main.rs:{line}:{n}: called `Option::unwrap()` on a `None` value",
    "Fatal Python error: Segmentation fault",
    "Segmentation fault (core dumped)",
    "kernel: {svc}[{pid}]: segfault at 0 ip 0000{id} sp 00007ffd error 4 in libc.so.6",
    "# A fatal error has been detected by the Java Runtime Environment: SIGSEGV (0xb) at pc=0x{id}",
    "Exception in thread \"main\" java.lang.NullPointerException at com.{bp}.{svc}.Boot.init(Boot.java:{line})",
    "Exception in thread \"main\" java.lang.ExceptionInInitializerError",
    "Traceback (most recent call last): ... AttributeError: 'NoneType' object has no attribute 'get'",
    "TypeError: Cannot read properties of undefined (reading 'split') at init (/app/server.js:{line})",
    "node[{pid}]: ../src/node_platform.cc:{line}: Assertion failed",
    "terminate called after throwing an instance of 'std::runtime_error' what(): bad init",
    "free(): double free detected in tcache 2 (Aborted, core dumped)",
    "{svc}.service: Main process exited, code=dumped, status=11/SEGV",
    "{svc}.service: Main process exited, code=killed, status=6/ABRT",
    "fatal error: concurrent map writes (goroutine {k} [running])",
    'level=panic msg="startup" err="assignment to entry in nil map" version={ver}',
    '{{"level":"fatal","msg":"unhandled exception at boot","error":"TypeError: x is not a function","version":"{ver}"}}',
    "Illegal instruction (core dumped) -- binary built for avx512, host lacks it",
    "SIGILL: illegal instruction in {svc} {ver} on start",
    "Unhandled exception. System.NullReferenceException: Object reference not set to an instance of an object.",
    "thread 'main' has overflowed its stack; fatal runtime error: stack overflow",
    "RecursionError: maximum recursion depth exceeded while loading routes",
    "panic: assertion failed: shards.len() > 0 (build {ver})",
    "ERROR: glibc detected: corrupted size vs. prev_size; aborting {svc}",
]
DBSLOTS = [
    'FATAL: sorry, too many clients already',
    'FATAL: remaining connection slots are reserved for non-replication superuser connections',
    "psycopg2.OperationalError: FATAL: too many connections for role \"{user}\"",
    "ERROR 1040 (HY000): Too many connections",
    "java.sql.SQLNonTransientConnectionException: Data source rejected connection: \"Too many connections\"",
    "pq: sorry, too many clients already ({db} max_connections=100)",
    "pgbouncer: no more connections allowed (max_client_conn)",
    "pgbouncer: pooler error: client_login_timeout (server down or full: {db})",
    "MongoServerError: connection pool for mongo-0:27017 was cleared: too many open connections",
    "redis: ERR max number of clients reached",
    'level=error msg="db connect" db={db} err="FATAL: too many connections for database \\"{word}\\""',
    '{{"level":"error","msg":"connection rejected","db":"{db}","in_use":100,"max":100}}',
    "sqlalchemy.exc.OperationalError: (psycopg2.OperationalError) FATAL: too many clients already",
    "Error: Connection lost: The server closed the connection (ER_CON_COUNT_ERROR)",
    "{db}: max_connections (200) reached by {n} copies x 25 pool size; new copies cannot connect",
    "prisma: Error P2037 Too many database connections opened",
    "rds: DatabaseConnections {k}/{k} at limit on {db}",
    "thread 'worker' panicked: pool timed out: sorry, too many clients already",
    "HikariPool-2 - Failed to initialize pool: FATAL: remaining connection slots are reserved",
    "ORA-00020: maximum number of processes (300) exceeded",
    "Npgsql.PostgresException: 53300: too many connections for role \"{user}\"",
    "mysqld: Aborted connection {pid} to db: '{word}' (Too many connections)",
    "postgres[{pid}]: FATAL:  sorry, too many clients already",
    "DBA: {db} is at its connection cap; every extra copy opens 20 more",
    "knex: Timeout acquiring a connection. The pool is probably full. (db rejects new ones: 53300)",
    "elastic: too_many_requests: connection limit {k} on {db} reached",
]
UP5XX = [
    "{vendor} API answered {code} for every call in the last {n}m (status page: major outage)",
    "[error] upstream prematurely closed connection, upstream: \"https://{dom}/\" ({code})",
    '{{"level":"error","msg":"vendor call failed","vendor":"{vendor}","status":{code},"retries":3}}',
    'level=error msg="payment provider" status={code} body="internal error" attempt=3/3',
    "requests.exceptions.HTTPError: {code} Server Error: Bad Gateway for url: https://{dom}/v1/charge",
    "Error: Request failed with status code {code} (https://{dom})",
    "envoy: upstream_reset_before_response_started{{remote_reset}} to cluster {vendor}_ext (all hosts)",
    "{dom} - - \"POST /v2/lookup HTTP/1.1\" {code} 0 \"-\" upstream=external",
    "feign.FeignException$ServiceUnavailable: [503] during [POST] to [https://{dom}/api]",
    "grpc: code = Unavailable desc = upstream {vendor} returned 503 for all regions",
    "circuit breaker OPEN for {vendor}: 100% of calls failing with {code}",
    "hystrix: {vendor}Command short-circuited and fallback failed",
    "auth service answered {code} to all token checks; every request fails",
    "ERROR geocoder: {vendor} 500 Internal Server Error (their side, incident INC-{k})",
    "upstream {dom} health: 0/{n} endpoints passing, responses {code}",
    "thread 'main' panicked: ledger upstream: status 502 Bad Gateway",
    "haproxy: backend ext_{svc} has no server available! (all upstream checks {code})",
    "aiohttp.ClientResponseError: {code}, message='Service Unavailable', url='https://{dom}/score'",
    "shared model server ml/{model} returns 500 to every caller since its deploy",
    "Caused by: org.springframework.web.client.HttpServerErrorException$BadGateway: 502 from {dom}",
    "node: Error: socket hang up (upstream {dom}, every attempt)",
    "payments partner status: degraded - all authorisations failing with 503",
    "retry budget exhausted for {vendor}: 500 Internal Server Error x{k}",
    "{vendor} returns HTTP {code} with 'maintenance' banner to every request",
    "[crit] all upstreams of {svc}_ext answered {code}; nothing to fail over to",
    "search backend shared by all copies answers 500 (index corrupt)",
]
WARMUP = [
    "INFO warming cache: {pct}% of {gib}.1M keys loaded",
    "loading model weights into GPU memory (layer {k}/96)",
    "INFO JIT compilation in progress, tier-2 not reached yet",
    "INFO priming connection pool ({n}/32 open)",
    "building search index shard {n} of 12",
    "Loading checkpoint shards: {pct}%|####      | {n}/12 [00:{k}<00:{k}]",
    "INFO Started {svc} in {k}.3 seconds; caches cold, first requests will be slow",
    'level=info msg="warmup" stage=embeddings progress={pct}%',
    '{{"level":"info","msg":"index load","shard":{n},"of":16,"eta_s":{k}}}',
    "[{svc}] hydrating product catalog from snapshot ({pct}% done)",
    "INFO  c.z.h.HikariDataSource - HikariPool-1 - Starting...",
    "torch.compile: compiling graph {n}/{k} (first call after deploy)",
    "TensorRT: building engine for {model}, this may take several minutes",
    "INFO replaying {cnt} events to rebuild in-memory state ({pct}%)",
    "Preloading {model}: reading 4.{n} GB from disk",
    "INFO cache hit ratio {pct}% and rising (cold start after rollout)",
    "onnxruntime: graph optimisation level 99 for {model}, session not ready",
    "GC: heap growing to steady state after restart (young gen {mib}MB)",
    "INFO readiness: waiting for warm set ({pct}% of 40k hot keys)",
    "V8 code cache empty after deploy; compiling routes lazily",
    "elasticsearch: shard recovery in progress ({pct}% of {gib}gb) after restart",
    "INFO downloading embeddings table v{ver} (page {n} of 20)",
    "warm-up traffic replay: {cnt} requests of {cnt} sent",
    "INFO lazy-loading localisation bundles (first hit per locale)",
    "ranker: feature store cache cold, p95 expected to settle within ~10m",
    "INFO mmap of index file done, faulting pages in ({pct}%)",
]
# Approve: the errors are the overload itself (more copies help).
OVERLOAD = [
    "upstream timed out (110: Connection timed out) while reading response header from upstream",
    "503 Service Unavailable: request queue full (depth {q})",
    "HikariPool-1 - Connection is not available, request timed out after 30000ms (pool busy, {k} waiting)",
    "WARN worker pool saturated: {w}/{w} busy, {k}0 queued",
    "context deadline exceeded while waiting for a free worker",
    "ERROR request took {slow}ms > slo 1000ms, queue wait {slow}ms",
    "java.util.concurrent.RejectedExecutionException: Thread pool is EXHAUSTED! Active: {w}, Queue: {q}/{q}",
    "Task rejected from ThreadPoolExecutor[Running, pool size = {w}, active threads = {w}, queued tasks = {q}]",
    'level=warn msg="backlog growing" queue={q} workers={w} busy={w}',
    '{{"level":"error","msg":"request timeout","path":"{path}","waited_ms":{slow},"cause":"no free worker"}}',
    "[warn] {k}#0: {w} worker_connections are not enough",
    "{ip} - - \"GET {path} HTTP/1.1\" 503 0 rt={slow}.0 (local pool overloaded)",
    "envoy: upstream_rq_pending_overflow on cluster {svc}_local (pending queue full)",
    "haproxy: backend {svc}_be/s{n}: {k}0 requests queued, maxconn {w} reached",
    "gunicorn: [CRITICAL] WORKER TIMEOUT (pid:{pid}) -- all {w} workers busy",
    "uvicorn: too many concurrent requests, returning 503 (limit {w})",
    "grpc: code = DeadlineExceeded desc = context deadline exceeded (server busy, {k} in flight)",
    "Node event loop lag {slow}ms; requests queued behind it",
    "Tomcat: All {w} threads are currently busy, waiting. Increase maxThreads or scale out",
    "WARN slow request {path} {slow}ms (queue wait {slow}ms, handler 40ms)",
    "celery: Received task but all {w} worker processes are busy; {k}0 tasks waiting",
    "puma: thread pool full ({w}/{w}), backlog {k}",
    "sidekiq: queue 'default' latency {k}s and rising",
    "tokio: accept backlog full, {k} connections waiting",
    "ERROR timed out after 5s waiting for a handler slot (inflight={w}, max={w})",
    "429 Too Many Requests returned by our own limiter: in-flight cap {w} per copy reached",
    "kafka consumer lag {cnt} and growing on {word}; consumers at 100% cpu",
    "WARN p95 {slow}ms, {pct}% of it in the accept queue",
]
# Harmless noise: nothing that argues against the load.
HARMLESS = [
    "DeprecationWarning: the 'pkg_resources' API is deprecated",
    "GET /favicon.ico 404 0.4ms",
    "GET /robots.txt 404 0.3ms",
    "{ip} - - \"GET /apple-touch-icon.png HTTP/1.1\" 404 153",
    "WARN config key 'timeout' is deprecated, use 'request_timeout'",
    "INFO served {cnt} requests, errors=0",
    "debug: cache miss for key user:{k}{k} (will fetch)",
    "POST /api/login 401 12ms (bad token from client)",
    '{{"level":"warn","msg":"client sent invalid JWT","status":401,"path":"{path}"}}',
    "level=info msg=\"retrying request\" attempt=2 result=ok dur={ms}ms",
    "WARN retry 1/3 for {path} succeeded",
    "[GC (Allocation Failure) {mib}M->{k}M({gib}G), 0.0{n} secs]",
    "gc 12 @{k}.2s 1%: 0.02+1.1+0.01 ms clock, {mib}->{k} MB",
    "INFO GC pause (young) {ms}ms",
    "FutureWarning: Series.__getitem__ treating keys as positions is deprecated",
    "(node:{pid}) [DEP0005] DeprecationWarning: Buffer() is deprecated",
    "DEBUG session {id} refreshed",
    "WARN client closed connection before response (499) {path}",
    "{ip} - - \"GET /wp-login.php HTTP/1.1\" 404 0 \"-\" \"scanner\"",
    "POST {path} 422 (validation error: email is required)",
    "INFO error budget: 0 errors in the last 5m",
    "warning: unused manifest key `package.metadata.docs` (build info)",
    "level=debug msg=\"healthcheck\" status=ok latency={ms}ms",
    "WARN: ssl session ticket key rotated",
    "INFO Exception handler registered for ValidationError (startup)",
    "GET /health 200 1ms",
    "INFO failed login for user 'bob' (wrong password), 1 attempt",
    "WARN feature flag 'new_checkout' not found, using default false",
    "INFO 0 failed jobs, 0 errors, next run in 60s",
    "notice: client {ip} sent TLS alert 'close notify'",
]
HEALTHY = [
    "INFO request completed status=200 dur={ms}ms",
    "GET /api/items 200 {ms}ms",
    "INFO processed batch of {q} events in {ms}0ms",
    "INFO heartbeat ok",
    "{ip} - - \"GET {path} HTTP/1.1\" 200 {cnt} rt=0.0{ms}",
    '{{"level":"info","msg":"request done","status":200,"path":"{path}","ms":{ms}}}',
    'level=info msg="handled" method=GET path={path} status=200 dur={ms}ms',
    "INFO  o.s.web.servlet.DispatcherServlet - Completed 200 OK",
    "INFO: 10.0.0.{n}:5{k} - \"POST {path} HTTP/1.1\" 201 Created",
    "[{hh}] INFO {svc}: synced {k} records",
    "INFO connected to {db} (pool 8/32)",
    "INFO checkpoint written ({mib} MB)",
    "envoy access: \"GET {path}\" 200 - {ms} ms upstream={svc}",
    "INFO consumer group {svc} rebalanced, {n} partitions assigned",
    "INFO cache hit ratio 0.9{n}",
    "INFO flushed {k} spans to collector",
    "DEBUG GET {path} -> 200 in {ms}ms",
    "INFO scheduled job {word}-sweep ran in {ms}ms",
    "[{hh}] {svc} INFO listening on :{lport}",
    '{{"level":"info","msg":"kafka commit","topic":"{word}","offset":{cnt}}}',
    "level=info msg=\"cache refresh\" keys={cnt} dur={ms}ms",
    "INFO: Application startup complete.",
    "INFO worker {n} picked up task {id}",
    "access: 200 POST {path} {ms}ms bytes={cnt}",
    "INFO tls handshake ok with {db}",
]
# Approve: a batch or job summary with zero failures.
BATCH = [
    "INFO batch {id} done: {cnt} records, 0 failed, 0 skipped",
    "job {word}-export finished in {k}s: ok={cnt} error=0",
    '{{"level":"info","msg":"run complete","processed":{cnt},"failed":0,"errors":[]}}',
    'level=info msg="nightly reconcile" mismatches=0 errors=0 duration={k}m',
    "celery: Task {word}.rebuild succeeded in {k}.2s: {{'failed': 0}}",
    "Spring Batch: Job: [{word}Job] completed with status COMPLETED, failures=0",
    "airflow: DAG {word}_daily run succeeded (0 failed tasks, 0 retries)",
    "cron {word}-cleanup: deleted {cnt} rows, error count 0",
    "INFO import summary: {cnt} rows read, {cnt} written, 0 rejected",
    "backup {db}: completed, 0 errors, {gib}.4 GiB",
    "ETL {word}: extract ok, transform ok, load ok (0 failures)",
    "INFO retry queue drained: 0 messages failed permanently",
    "k8s Job {svc}-migrate-check: Completed (1/1), failed 0",
    "{svc} reindex: {cnt} documents, errors: none",
    "test canary passed: 0 failures in {k} checks",
    "INFO dead-letter queue empty after run ({cnt} processed)",
    "nightly {word} sync: {cnt} upserts, 0 conflicts, 0 errors",
    "[{hh}] report generation finished: {k} reports, failures: 0",
    "go test ./... ok (smoke job after deploy), 0 failed",
    "INFO compaction finished: {k} segments merged, 0 errors",
    "rclone: Transferred {cnt} / {cnt}, 100%, Errors: 0",
    '{{"job":"{word}-rollup","status":"succeeded","failed_records":0}}',
    "level=info msg=\"sweep done\" expired={cnt} failed=0",
    "Rake task {word}:archive completed ({cnt} rows), 0 exceptions",
    "batch-window {id}: {cnt} messages replayed, 0 poison",
    "INFO email digest sent to {cnt} users, bounces=0 errors=0",
]
# Events: a crash loop (reject) versus a crash fixed by a later deploy or config change (approve).
CRASH_EV = [
    "{inst} exited with code {exit}, restart {k}",
    "Back-off restarting failed container {svc} in pod {svc}-{id} (restarts {k})",
    "{inst} crashed on start (exit {exit}), restarted {n} times in 5m",
    "pod {svc}-{id} CrashLoopBackOff, restart count {k}",
    "systemd: {svc}.service: Scheduled restart job, restart counter is at {k}",
    "instance {inst} failed its start probe {n} times, restarting",
    "{inst} exited (exit code {exit}), restart {n}",
    "Liveness probe failed for {inst} right after start; killed and restarted ({k}x)",
    "all {n} copies of {slice} restarted in the last 3m",
    "{inst}: Error, exit code {exit}; back-off 2m40s",
    "placement: {inst} started on {host}, exited after 4s, retrying",
    "supervisor: {svc} entered FATAL state, too many start retries too quickly",
    "{svc}.service: Start request repeated too quickly.",
    "{slice} restart storm: {k} restarts across copies in 10m",
    "new copy {inst} exited 3s after start, like the others",
    "{inst} OOMKilled? no: exit {exit} after 2s, restart {k}",
    "container {svc} in {inst} terminated (Error), restarting: attempt {k}",
    "{inst} did not become ready; it exited with status {exit} (restart {n})",
    "kubelet: Back-off {n}m0s restarting failed container={svc}",
    "{slice}: 0 of {n} copies ready, {k} restarts in 15m",
    "{inst} exited with code {exit}, restart {k}",
    "health: {inst} up 3s, down, up 4s, down (restart {k})",
    "scheduler: replacing crashed copy {inst} (attempt {n})",
    "{svc}.service: Failed with result 'exit-code' (restart {k})",
    "{inst} restarted {k} times since the last rollout",
    "{inst}: process exited unexpectedly (code {exit}); restart #{k}",
    "watchdog: {svc} died {n} times in 5m, still restarting",
]
GENERIC_FIX = [
    "{slice} rolled back to {ver}; 0 restarts since",
    "deploy {ver} of {slice} completed, all copies passing readiness for {n}m",
    "{slice}: crash loop resolved by rollout {ver}, stable since",
    "hotfix {ver} rolled out to {slice} by {who}; copies ready",
]
FIXES = {  # what ends each fault, as the events tell it
    "oom": ["config change applied to {slice}: memory limit raised to {gib}Gi, copies healthy since",
            "{slice} redeployed with -Xmx{gib}g; no OOM kills since",
            "{who} raised the heap of {svc}; restarts stopped"],
    "config": ["secret {svc}-env restored by {who}; {slice} copies ready",
               "{who} fixed the typo in {svc}'s config; restarts stopped",
               "config map for {slice} corrected and reloaded"],
    "segfault": ["hotfix {ver} for the start-up crash rolled out to {slice}",
                 "{slice} rolled back to the last good build {ver}"],
    "dep-down": ["dependency {db} recovered; {slice} reconnected",
                 "{db} failover complete, new primary accepting connections",
                 "dns fixed by {who}; {svc} resolves its dependencies again"],
    "cert": ["certificate for {svc} renewed; handshakes succeed",
             "trust store of {slice} updated with the vendor's new CA"],
    "disk-full": ["volume of {slice} expanded to 200Gi; writes resumed",
                  "{who} cleared old logs on {host}, disk at 41%"],
    "port-in-use": ["port clash fixed (stale {svc} process killed); new copies bind fine",
                    "sidecar moved off port {lport}; {slice} copies start"],
    "migration": ["migration {mig} applied; {slice} schema check passes",
                  "{who} re-ran the failed migration; {svc} boots"],
}
ROUTINE_EV = [
    "rollout of {slice} to version {ver} finished",
    "node {host} joined the cluster",
    "{inst} became ready",
    "scaled {slice} from {n} to {k}",
    "image pulled for {svc}:{ver} in 3.2s",
    "certificate for {svc} renewed (valid 90d)",
    "backup of {db} completed",
    "leader election: n{n} is leader",
    "config reload for {slice} ok",
]
# ---------------------------------------------------------------------------------------------
# Notes. {s}: the slice, {svc}: its short name, {until}: a time phrase built by hold_time().

HOLD_ANY = [  # forbid any change of the slice's count
    "change freeze for {s} {until}, release night",
    "load test on {s} running {until}, hands off",
    "{s}: hold all changes {until} (vendor incident)",
    "no scaling of {s} {until}, audit in progress",
    "pls dont touch {svc} {until} - perf benchmark, need a fixed instance count",
    "FREEZE: {s} stays as is {until}. ping me before any change",
    "maintenance window on {svc}'s db {until}; keep {s} steady",
    "game day: we are measuring {s} at a fixed size {until}",
    "hands off {svc} {until} pls, chaos experiment running",
    "do not resize {s} {until} -- billing reconciliation reads from every copy",
    "{s} pinned {until} (security review of the running copies)",
    "heads up: controller changes on {s} are paused {until}",
    "keep {svc} exactly where it is {until}, capacity test w/ the partner",
    "holding {s} at current size {until}; any scaling skews the experiment",
    "freeze on {svc} {until}. no exceptions",
    "we're profiling {s} {until}, don't add or remove copies",
    "Audit of {s} {until}: the auditors count copies, keep it fixed",
    "{svc}: vendor asked us not to change anything {until}",
    "no autoscaling on {s} {until} pls, DB team is resizing the cluster",
    "pause scaling for {svc} {until} -- incident INC-{inc} still open",
    "k8s upgrade on the {svc} pool {until}; no count changes meanwhile",
    "do NOT touch {s} {until}. cost experiment, finance is watching",
]
HOLD_IN = [  # capacity kept or promised: no scale-in
    "do not scale {s} down {until}, capacity kept for the batch job",
    "promised {svc} capacity to the data team {until} -- no scale-in",
    "keep every copy of {s} {until}, partner load test",
    "{s} must keep its copies {until} (marketing webinar)",
    "no scale-in on {svc} {until}; reserved for the quarter-end run",
    "leave {s} big {until}, we expect a replay of yesterday's backlog",
]
HOLD_OUT = [  # no scale-up
    "do not add copies of {s} {until}: the db behind it is in maintenance",
    "no scale-out for {svc} {until}, license allows only the current count",
    "{s}: cap at current size {until}, downstream vendor rate-limits us",
]
DRILL = [
    "freeze on {s} through the end of the DR drill",
    "hands off {svc} through the end of the drill pls",
    "no changes to {s} while the failover drill runs",
]
PEAK = [
    "nightly import hits {s} at {at}, keep capacity",
    "big promo starts {at}, do not shrink {s}",
    "newsletter to 2M users goes out {at}; {svc} will spike",
    "TV spot airs {at} -- expect {svc} traffic x3",
    "black friday flash sale opens {at}, {s} needs all its copies",
    "heads up: partner batch calls {svc} {at}, about 4x normal",
    "match kicks off {at}, {s} load climbs right after",
    "payroll run {at}; {svc} gets hammered every month",
    "exam window opens {at} for 40k students ({s})",
    "market open {at}: {svc} peaks in the first 30 min",
    "push notification campaign {at}, traffic to {s} follows within minutes",
    "quarter close {at}; finance jobs will hit {svc} hard",
    "flash sale on {s} {at}. keep it big",
    "ticket drop for the concert {at}, {svc} gets slammed",
    "end-of-month invoicing kicks off {at} on {s}",
    "customer migration batch hits {svc} {at}; do not scale it in",
    "livestream starts {at}, {s} traffic will jump",
    "sale email blast {at} -> {svc} busy for ~1h",
    "school day starts {at}, {s} ramps hard",
    "reindex job from the search team lands on {svc} {at}",
]
SUPPORT_UP = [
    "partner launch today, {s} will see more calls, scaling is fine",
    "let {svc} grow as needed this afternoon, budget approved",
    "campaign live, {s} can scale up freely",
    "expect more traffic on {svc} all day (press coverage); autoscaler has my ok",
    "new customer onboarding to {s} today, more load is expected and fine",
    "ok to add copies of {svc}, cost is not a concern this week",
    "{s}: scaling out is welcome, we under-provisioned after the migration",
    "traffic shift from the old region lands on {svc} today, let it scale",
    "release of the new app version today; {s} will need more copies, go ahead",
    "scaling {svc} out is expected during the sale, don't block it",
    "marketing push on {s} all evening - more copies are fine",
    "{svc} is undersized after yesterday's incident, let the autoscaler add",
    "fine to grow {s} up to its max today",
    "we expect a surge on {svc} from the app store feature; scale-ups approved",
]
SUPPORT_DOWN = [
    "campaign over, {s} can shrink back",
    "load test finished, {svc} may go back to normal size",
    "traffic for {s} moved to the new region; fewer copies here is fine",
    "ok to scale {svc} in, the import is done for today",
    "{s} was over-provisioned for the launch, let it come down",
    "quiet week for {svc}, fine to run fewer copies",
]
JOB_ON = [
    "{n} runs the fine-tune job {until}, do not move it",
    "training checkpoint on {n} finishes {until}, leave it alone",
    "{n}: long render job (no checkpoints) {until}. do NOT drain",
    "pls keep {n} up {until}, genome batch would restart from zero",
    "eval run for {model} on {n} {until}; draining kills it",
    "{n} hosts the one-off data backfill {until}, hands off",
    "dont drain {n} {until} - customer's training job, no resume support",
    "{n} is doing the {model} export {until}. interrupting = redo 6h of work",
    "{n} busy with the nightly {model} retrain {until}; leave it",
    "please do not move workloads off {n} {until}, benchmark in progress",
    "{n}: migration copy of the photo archive {until}, cannot be resumed",
    "keep {n} in service {until} -- the {model} distillation job is pinned there",
    "{n} runs a customer's batch inference {until}. no drain",
    "hands off {n} {until}: fine-tune of {model}, 2 GPUs, no checkpointing",
]
JOB_DONE_EV = [
    "job {model}-finetune on {n} completed successfully",
    "batch backfill on {n} finished (exit 0)",
    "training run {id} on {n} completed; checkpoints uploaded",
    "render job on {n} done, node idle",
    "eval of {model} on {n} succeeded, released its GPUs",
]
UNRELATED_NOTES = [
    "{s}: freeze until tomorrow 09:00 UTC, release train",
    "reminder: postmortem for last week's incident on {s} at 15:00",
    "{s} logs are noisy after the library bump, ignore the deprecation spam",
    "on-call handover done, nothing open for {s}",
    "dashboards for {svc} moved to the new grafana folder",
    "cost review: {s} runs more copies than it needs at night, look later",
    "{s} cert rotation scheduled for next tuesday",
    "pls ack pages for {svc} in the channel, not by DM",
]
ABBREV = [("please", "pls"), ("don't", "dont"), ("until", "til"), ("because", "bc"),
          ("with", "w/"), ("tomorrow", "tmrw"), ("minutes", "min"), ("about", "~")]


def styled(text):
    """A note as people write them: lower case, abbreviations, a small typo, a sign-off."""
    r = rng.random()
    if r < 0.3:
        text = text.lower()
    elif r < 0.4:
        text = text[0].upper() + text[1:]
    if rng.random() < 0.35:
        a, b = rng.choice(ABBREV)
        text = text.replace(a, b, 1)
    if rng.random() < 0.25:
        words = text.split(" ")
        idx = [i for i, w in enumerate(words) if w.isalpha() and len(w) >= 5]
        if idx:
            i = rng.choice(idx)
            w = words[i]
            j = rng.randint(1, len(w) - 2)
            words[i] = w[:j] + w[j + 1] + w[j] + w[j + 2:]
            text = " ".join(words)
    r = rng.random()
    if r < 0.1:
        text = "FYI " + text
    elif r < 0.2:
        text = text + " thx"
    elif r < 0.27:
        text = text + " !!"
    elif r < 0.33:
        text = "heads up - " + text
    return text


def hhmm(m):
    return f"{m // 60:02d}:{m % 60:02d}"


def h12(m):
    h, mm = m // 60, m % 60
    suf = "am" if h < 12 else "pm"
    h = h % 12 or 12
    return f"{h}{suf}" if mm == 0 else f"{h}:{mm:02d}{suf}"


def hold_time(now_m, in_force):
    """A time phrase and how long before now the note was written (minutes): in force, the
    window ends after now; not, it ended before now."""
    form = rng.choice(["until", "till12", "untilplain", "next", "before", "noon"])
    if in_force:
        end = now_m + rng.choice([20, 30, 45, 60, 75, 90, 120, 150, 180, 240])
    else:
        end = now_m - rng.choice([15, 20, 30, 45, 60, 90, 120, 180, 240])
    end = end // 15 * 15
    if in_force and end <= now_m + 5:
        end += 15
    if form == "next":
        dur = rng.choice([60, 120, 180, 240, 30, 90])
        ago = rng.randint(5, dur - 10) if in_force else dur + rng.choice([60, 75, 90, 120])
        unit = rng.choice(["h", "hours", "hrs"]) if dur % 60 == 0 else "min"
        n = dur // 60 if dur % 60 == 0 else dur
        phrase = rng.choice([f"for the next {n} {unit}", f"for {n}{unit}" if unit in ("h", "min") else f"for {n} {unit}",
                             f"for the next {n} {unit} or so"])
        return phrase, ago
    ago = (now_m - end) + rng.randint(30, 200) if not in_force else rng.randint(10, 240)
    if form == "till12":
        return rng.choice([f"till {h12(end)}", f"til {h12(end)} utc", f"until {h12(end)} UTC"]), ago
    if form == "untilplain":
        return rng.choice([f"until {hhmm(end)}", f"until {hhmm(end).replace(':', 'h')}",
                           f"till {hhmm(end)}z", f"up to {hhmm(end)} UTC"]), ago
    if form == "before":
        return rng.choice([f"before the {hhmm(end)} release", f"until the {hhmm(end)} deploy is out",
                           f"till the {hhmm(end)} cutover"]), ago
    if form == "noon" and (end == 720 or end == 1080):
        return ("until noon" if end == 720 else "until 6pm UTC"), ago
    return rng.choice([f"until {hhmm(end)} UTC", f"until {hhmm(end)} utc", f"until {hhmm(end)}UTC"]), ago


def peak_time(now_m):
    d = rng.choice([15, 20, 30, 40, 45, 60, 90, 120])
    at = (now_m + d) // 5 * 5
    if at <= now_m:
        at += 5
    if rng.random() < 0.25:  # relative to the note: written `ago` minutes ago, `later` before the peak
        later = rng.choice([30, 45, 60, 90, 120, 180])
        ago = rng.randint(3, later - 15)
        return (f"in {later} min" if later < 60 else f"in {later // 60}h" if later % 60 == 0
                else f"in {later} minutes"), ago
    ago = rng.randint(5, 300)
    return rng.choice([f"at {hhmm(at)} UTC", f"at {h12(at)}", f"at {hhmm(at)}", f"at {hhmm(at)}z"]), ago


def ago_s(minutes):
    if minutes < 1:
        return f"{max(1, int(minutes * 60))}s"
    if minutes < 120:
        return f"{int(minutes)}m"
    return f"{int(minutes // 60)}h"
# ---------------------------------------------------------------------------------------------
# Numbers: slices, proposals and nodes that agree with the rule that fired.

ERROR_WORDS = ["error", "exception", "fatal", "panic", "fail", "refused", "denied", "killed", "oom",
               "outofmemory", "out of memory", "timeout", "timed out", "traceback", "crash",
               "unavailable", "cannot", "could not", "unable"]


def is_error(line):
    l = line.lower()
    return any(w in l for w in ERROR_WORDS)


def f2(v):
    return f"{v:.2f}"


UP_RULES = ["cpu-high", "calls-high", "latency-high", "cpu-saturated"]
SERVICE_RULES = {"calls-high", "latency-high", "calls-low"}


def make_scale(app, rule, frm, to=None, step=None, service=None, ferr=None):
    """A scale proposal of `app` by `rule` from `frm` with the slice's figures, and the count the
    numbers need (the rule's proportional step). `to` defaults to that count."""
    name = f"{app[0]}/{app[1]}"
    CUR_N[0] = frm
    service = rule in SERVICE_RULES or (service if service is not None else rng.random() < 0.5)
    tcpu = rng.choice([0.6, 0.6, 0.6, 0.5, 0.7])
    tcalls = rng.choice([100.0, 100.0, 50.0, 200.0])
    tlat = float(rng.choice([150, 200, 250, 300, 500]))
    held = f"{rng.randint(16, 95)}s"
    per = round(rng.uniform(0.35, 0.62) * tcpu / 0.6, 2)
    cpi = round(rng.uniform(0.5, 0.95) * tcalls, 2)
    lat = float(round(rng.uniform(0.4, 0.85) * tlat))
    why = []
    if rule == "cpu-high":
        per = round(rng.uniform(1.14, 1.48) * tcpu, 2)
        need = math.ceil(frm * per / tcpu - 1e-9)
        why.append(f"cpu per instance {f2(per)} > target {f2(tcpu)} (band limit {f2(tcpu * 1.1)}) for {held}")
    elif rule == "cpu-saturated":
        per = round(rng.uniform(0.91, 1.0), 2)
        need = frm * 3
        why.append(f"cpu per instance {f2(per)} > 0.90 for {rng.randint(3, 20)}s: saturated, add 200%")
    elif rule == "calls-high":
        cpi = round(rng.uniform(1.15, 1.9) * tcalls, 2)
        need = math.ceil(frm * cpi / tcalls - 1e-9)
        why.append(f"calls per instance {f2(cpi)} > target {f2(tcalls)} (band limit {f2(tcalls * 1.1)}) for {held}")
    elif rule == "latency-high":
        lat = float(round(rng.uniform(1.2, 2.4) * tlat))
        need = math.ceil(frm * lat / tlat - 1e-9)
        why.append(f"p95 latency {lat:.0f} ms > target {tlat:.0f} ms (band limit {tlat * 1.1:.0f}) for {held}")
    elif rule == "cpu-low":
        per = round(rng.uniform(0.2, 0.8) * tcpu, 2)
        need = max(1, math.ceil(frm * per / tcpu - 1e-9))
        why.append(f"cpu per instance {f2(per)} < target {f2(tcpu)} (band limit {f2(tcpu * 0.9)}) for {rng.randint(2, 9)}m")
    elif rule == "calls-low":
        cpi = round(rng.uniform(0.2, 0.8) * tcalls, 2)
        need = max(1, math.ceil(frm * cpi / tcalls - 1e-9))
        why.append(f"calls per instance {f2(cpi)} < target {f2(tcalls)} (band limit {f2(tcalls * 0.9)}) for {rng.randint(2, 9)}m")
    elif rule == "forecast":
        per = round(rng.uniform(0.92, 1.05) * tcpu, 2)
        need = frm
    else:
        raise ValueError(rule)
    if to is None:
        to = need
    if step is not None:
        why.append(f"step {step}: {frm} -> {to}")
    elif rule not in ("forecast", "cpu-saturated"):
        why.append(f"proportional step: {frm} -> {need}")
    mn = rng.choice([1, 1, 1, 2]) if min(to, frm, need) >= 2 else 1
    mx = max(to, need, frm) + rng.randint(0, 8)
    calls = round(cpi * frm, 2)
    err = ferr if ferr is not None else round(rng.choice([0.0, 0.0, 0.001, 0.002, 0.004, 0.008]), 4)
    sl = {"name": name, "desired": frm, "active": frm, "min": mn, "max": mx, "cpu_per_instance": per}
    if tcpu != 0.6:
        sl["target_cpu"] = tcpu
    inputs = {"instances": f"{frm} desired, {frm} active", "bounds": f"{mn}..={mx}",
              "target_cpu": f2(tcpu), "cpu_per_instance": f2(per)}
    if service:
        sl.update({"calls_per_s": calls, "latency_ms": lat, "target_latency_ms": tlat, "error_rate": err})
        inputs.update({"calls_per_s": f2(calls), "calls_per_instance": f2(cpi),
                       "target_calls_per_instance": f2(tcalls), "latency_p95_ms": f"{lat:.0f}",
                       "error_rate": f"{err:.4f}", "waiting": "0", "target_latency_ms": f"{tlat:.0f}"})
    if rule == "forecast":
        unit = "calls/s" if service else "cpu"
        level = calls if service else round(per * frm, 2)
        down = to < frm
        trend = round(level * rng.uniform(0.02, 0.06), 2) * (-1 if down else 1)
        horizon = rng.choice(["5m", "10m", "15m"])
        ahead = round(level + trend * int(horizon[:-1]), 2)
        inputs.update({"forecast_of": unit, "forecast_level": f2(level),
                       "forecast_trend_per_min": f2(trend), f"forecast_in_{horizon}": f2(ahead),
                       "forecast_seasonal": rng.choice(["true", "false"])})
        why.append(f"forecast: {unit} {f2(level)} now, {f2(ahead)} in {horizon}; "
                   + ("fewer copies will do" if down else "more copies needed ahead of the rise"))
    prop = {"rule": rule, "scale": {"slice": name, "from": frm, "to": to}, "why": why, "inputs": inputs}
    return prop, sl, need


def up(app=None, rules=UP_RULES, service=None):
    """A scale-up whose numbers need exactly the step proposed."""
    app = app or rng.choice(APPS)
    rule = rng.choice(rules)
    frm = rng.randint(2, 6) if rule != "cpu-saturated" else rng.randint(1, 3)
    prop, sl, need = make_scale(app, rule, frm, service=service)
    return app, prop, sl


def down(app=None, rules=("cpu-low", "calls-low")):
    app = app or rng.choice(APPS)
    for _ in range(50):
        prop, sl, need = make_scale(app, rng.choice(rules), rng.randint(3, 10))
        if need < prop["scale"]["from"]:
            return app, prop, sl
    raise RuntimeError("no scale-in found")


def nodes(k=None, hot=None, gpu_share=0.4):
    k = k or rng.randint(3, 6)
    out = []
    for i in range(1, k + 1):
        n = {"name": f"n{i}", "state": "ready", "cpu": round(rng.uniform(0.25, 0.72), 2),
             "mem": round(rng.uniform(0.2, 0.65), 2)}
        if hot == i:
            n["gpu_temp"] = float(rng.randint(91, 98))
            n["gpu_util"] = round(rng.uniform(0.8, 1.0), 2)
        elif rng.random() < gpu_share:
            n["gpu_temp"] = float(rng.randint(48, 78))
            n["gpu_util"] = round(rng.uniform(0.1, 0.8), 2)
        out.append(n)
    return out


def gpu_drain(k=None, rule="gpu-hot"):
    ns = nodes(k or rng.randint(4, 7), hot=None)
    hot = rng.randint(1, len(ns))
    ns[hot - 1]["gpu_temp"] = float(rng.randint(91, 98))
    ns[hot - 1]["gpu_util"] = round(rng.uniform(0.8, 1.0), 2)
    name = f"n{hot}"
    if rule == "gpu-hot":
        why = [f"gpu temperature {ns[hot - 1]['gpu_temp']:.0f}C > 90C for {rng.randint(2, 6)}m"]
    else:
        why = [rng.choice([f"gpu {rng.randint(0, 7)}: {rng.randint(1, 5)} new XID 79 errors in 10m",
                           f"gpu {rng.randint(0, 7)}: uncorrected ECC errors rising ({rng.randint(2, 9)} new)",
                           f"gpu {rng.randint(0, 7)}: thermal slowdown for {rng.randint(3, 12)}m, {ns[hot - 1]['gpu_temp']:.0f}C"])]
    prop = {"rule": rule, "drain": {"node": name}, "why": why,
            "inputs": {"gpu_temp": f"{ns[hot - 1]['gpu_temp']:.0f}", "gpu_util": f2(ns[hot - 1]["gpu_util"])}}
    return prop, ns, name


# ---------------------------------------------------------------------------------------------
# Text pieces

def now_time():
    h = rng.randint(7, 20)
    m = rng.randint(0, 59)
    return h * 60 + m, f"{rng.choice(DAYS)}T{h:02d}:{m:02d}:{rng.randint(0, 59):02d}Z"


def inst(app):
    return f"{app[0]}/{app[1]}/{rng.randint(0, CUR_N[0] - 1)}"


def log(app, ago, line):
    return {"instance": inst(app), "ago": ago, "line": line}


def secs(lo=1, hi=90):
    return f"{rng.randint(lo, hi)}s"


def decisive(app, vocab, copies=None, lo=1, hi=120):
    """One line of `vocab`, written by 1-4 copies (the prompt counts repeats)."""
    line = fill(rng.choice(vocab), app)
    copies = copies or rng.choice([1, 1, 2, 2, 3, 4])
    return [log(app, secs(lo, hi), line) for _ in range(copies)]


def background(app, k=None, noisy=True):
    """Healthy and noisy lines that decide nothing."""
    k = rng.choice([0, 1, 1, 2, 2, 3]) if k is None else k
    out = []
    for _ in range(k):
        vocab = HARMLESS if noisy and rng.random() < 0.4 else HEALTHY
        out.append(log(app, secs(1, 300), fill(rng.choice(vocab), app)))
    return out


def other_app(app):
    while True:
        o = rng.choice(APPS)
        if o != app:
            return o


def side_notes(app, p=0.3):
    if rng.random() >= p:
        return []
    o = other_app(app)
    return [{"ago": f"{rng.randint(1, 20)}h", "by": rng.choice(PEOPLE),
             "text": styled(rng.choice(UNRELATED_NOTES).format(s=f"{o[0]}/{o[1]}", svc=o[1]))}]


def side_events(app, p=0.3):
    if rng.random() >= p:
        return []
    o = rng.choice([app, other_app(app)]) if rng.random() < 0.5 else other_app(app)
    return [{"ago": f"{rng.randint(10, 600)}m" if rng.random() < 0.5 else f"{rng.randint(2, 30)}h",
             "what": fill(rng.choice(ROUTINE_EV), o)}]


def side_recent(app, p=0.25):
    if rng.random() >= p:
        return []
    o = other_app(app)
    a, b = rng.randint(2, 6), rng.randint(2, 6)
    return [{"id": rng.randint(5, 400), "scale": {"slice": f"{o[0]}/{o[1]}", "from": a, "to": b + (a == b)},
             "status": rng.choice(["applied", "applied", "expired", "superseded"]),
             "ago": f"{rng.randint(20, 300)}m", "by": rng.choice(["controller", rng.choice(PEOPLE)])}]


def note(text, ago_min, by=None):
    return {"ago": ago_s(ago_min), "by": by if by is not None else rng.choice(PEOPLE), "text": styled(text)}
# ---------------------------------------------------------------------------------------------
# Families: each returns (situation, expect, text_decides, why).

VETO_REASONS = [None, "not now", "looking into the errors first", "wait for the deploy",
                "cost: hold for today", "investigating, leave it", "load test, see notes"]


def situation(now, prop, slices=None, ns=None, logs=None, events=None, notes=None, recent=None):
    doc = {"now": now, "proposal": prop}
    for k, v in (("slices", slices), ("nodes", ns), ("recent", recent), ("logs", logs),
                 ("events", events), ("notes", notes)):
        if v:
            if k in ("logs", "events", "notes"):
                v = list(v)
                rng.shuffle(v)
            doc[k] = v
    return doc


def plain(app, prop, sl, **kw):
    """A scale situation with nothing but distractors besides the numbers."""
    _, now = now_time()
    return situation(now, prop, [sl], nodes(), logs=background(app, noisy=True) + kw.get("logs", []),
                     events=side_events(app) + kw.get("events", []), notes=side_notes(app) + kw.get("notes", []),
                     recent=side_recent(app) + kw.get("recent", []))


def f_load_up():
    app, prop, sl = up()
    s = prop["scale"]
    return plain(app, prop, sl), "approve", False, f"the load needs {s['to']} copies ({prop['rule']})"


def f_load_down():
    app, prop, sl = down()
    return plain(app, prop, sl), "approve", False, "the copies idle well below target"


def f_forecast_in():
    app = rng.choice(APPS)
    frm = rng.randint(3, 9)
    prop, sl, _ = make_scale(app, "forecast", frm, to=frm - rng.choice([1, 1, 2]))
    return plain(app, prop, sl), "reject", False, "only the forecast wants fewer copies; the load is at target"


def f_vetoed():
    app, prop, sl = up() if rng.random() < 0.7 else down()
    s = prop["scale"]
    r = {"id": rng.randint(5, 400), "scale": dict(s), "status": "vetoed",
         "ago": f"{rng.randint(2, 14)}m", "by": rng.choice(PEOPLE)}
    reason = rng.choice(VETO_REASONS)
    if reason:
        r["reason"] = reason
    return plain(app, prop, sl, recent=[r]), "reject", False, "an operator vetoed the same action minutes ago"


def f_flap():
    if rng.random() < 0.6:
        app, prop, sl = up()
        s = prop["scale"]
        back = {"slice": s["slice"], "from": s["to"] if rng.random() < 0.5 else s["from"] + 1, "to": s["from"]}
    else:
        app, prop, sl = down()
        s = prop["scale"]
        back = {"slice": s["slice"], "from": s["to"] if s["to"] < s["from"] else s["from"] - 1, "to": s["from"]}
        if back["from"] >= back["to"]:
            back["from"] = max(1, s["from"] - 1)
    r = {"id": rng.randint(5, 400), "scale": back, "status": "applied",
         "ago": f"{rng.randint(2, 12)}m", "by": "controller"}
    return plain(app, prop, sl, recent=[r]), "reject", False, "it undoes a scale applied minutes ago: flapping"


def f_over_up():
    for _ in range(100):
        app = rng.choice(APPS)
        rule = rng.choice(["cpu-high", "calls-high", "latency-high"])
        frm = rng.randint(2, 6)
        step = rng.choice(["100%", "200%", "+4", "+5", "+6"])
        to = frm * 2 if step == "100%" else frm * 3 if step == "200%" else frm + int(step[1:])
        prop, sl, need = make_scale(app, rule, frm, to=to, step=step)
        if to - need >= 2:
            return plain(app, prop, sl), "adjust", False, f"{need} copies fit the load; step {step} to {to} overshoots"
    raise RuntimeError


def f_under_up():
    for _ in range(100):
        app = rng.choice(APPS)
        rule = rng.choice(["calls-high", "latency-high", "cpu-high"])
        frm = rng.randint(2, 6)
        prop, sl, need = make_scale(app, rule, frm, to=frm + 1, step="+1")
        if need - (frm + 1) >= 2:
            return plain(app, prop, sl), "adjust", False, f"the load needs {need} copies; +1 to {frm + 1} falls short"
    raise RuntimeError


def f_over_down():
    for _ in range(100):
        app = rng.choice(APPS)
        rule = rng.choice(["cpu-low", "calls-low"])
        frm = rng.randint(5, 12)
        to = rng.choice([1, 2, frm // 3])
        to = max(1, to)
        prop, sl, need = make_scale(app, rule, frm, to=to, step=f"-{frm - to}")
        if need - to >= 2 and need < frm:
            return plain(app, prop, sl), "adjust", False, f"{need} copies carry the load; {to} is too few"
    raise RuntimeError


def f_drain_few():
    prop, ns, name = gpu_drain(k=rng.randint(2, 5), rule=rng.choice(["gpu-hot", "gpu-hot", "gpu-unhealthy"]))
    others = [n for n in ns if n["name"] != name]
    mode = rng.choice(["none", "none", "busy", "gpu"])
    if mode == "none":
        for n in others:
            n["state"] = rng.choice(["draining", "drained", "down", "asleep"])
        why = "draining it would leave no ready node"
    elif mode == "busy":
        keep = rng.choice(others)
        for n in others:
            if n is not keep:
                n["state"] = rng.choice(["drained", "down"])
        keep["cpu"], keep["mem"] = round(rng.uniform(0.9, 0.99), 2), round(rng.uniform(0.88, 0.97), 2)
        why = f"only {keep['name']} would stay ready and it is already full"
    else:
        for n in others:
            if "gpu_temp" in n:
                n["state"] = rng.choice(["drained", "down", "draining"])
        if not any("gpu_temp" in n for n in others):
            for n in others:
                n.pop("gpu_temp", None), n.pop("gpu_util", None)
        g = rng.choice(others)
        g["gpu_temp"], g["gpu_util"], g["state"] = float(rng.randint(50, 70)), 0.0, "drained"
        why = "it is the last ready node with a GPU"
    _, now = now_time()
    app = rng.choice(APPS)
    return situation(now, prop, None, ns, logs=background(app, noisy=True), notes=side_notes(app, 0.2)), \
        "reject", False, why


def f_gpu_hot():
    prop, ns, name = gpu_drain(k=rng.randint(4, 7), rule=rng.choice(["gpu-hot", "gpu-hot", "gpu-unhealthy"]))
    _, now = now_time()
    app = rng.choice(APPS)
    return situation(now, prop, None, ns, logs=background(app, noisy=True), events=side_events(app),
                     notes=side_notes(app, 0.2)), "approve", False, "the GPU is in trouble and plenty of nodes stay ready"


def f_undrain():
    ns = nodes(rng.randint(3, 6))
    i = rng.randint(1, len(ns))
    n = ns[i - 1]
    n["state"] = "drained"
    n["gpu_temp"], n["gpu_util"], n["cpu"] = float(rng.randint(45, 72)), 0.0, round(rng.uniform(0.01, 0.08), 2)
    prop = {"rule": "gpu-cooled", "undrain": {"node": n["name"]},
            "why": [f"gpu temperature {n['gpu_temp']:.0f}C < 75C for {rng.randint(10, 40)}m",
                    "no GPU-health finding for 10m; drained by the controller"],
            "inputs": {"gpu_temp": f"{n['gpu_temp']:.0f}"}}
    drained = {"id": rng.randint(5, 400), "drain": {"node": n["name"]}, "status": "applied",
               "ago": f"{rng.randint(1, 6)}h", "by": "controller"}
    _, now = now_time()
    app = rng.choice(APPS)
    return situation(now, prop, None, ns, logs=background(app), recent=[drained] if rng.random() < 0.6 else None,
                     notes=side_notes(app, 0.2)), "approve", False, "the node has cooled down"


# --- text decides: reject ---------------------------------------------------------------------

def service_err():
    return round(rng.uniform(0.06, 0.6), 3) if rng.random() < 0.6 else None


def log_fault(vocab, why, crashy):
    def f():
        app = rng.choice(APPS)
        rule = rng.choice(UP_RULES)
        frm = rng.randint(2, 6) if rule != "cpu-saturated" else rng.randint(1, 3)
        prop, sl, _ = make_scale(app, rule, frm, ferr=service_err())
        _, now = now_time()
        logs = decisive(app, vocab) + background(app, rng.choice([0, 1, 1, 2]))
        if rng.random() < 0.3:  # a second line of the same family
            logs += decisive(app, vocab, copies=1)
        ev = []
        if crashy and rng.random() < 0.5:
            ev.append({"ago": secs(5, 120), "what": fill(rng.choice(CRASH_EV), app)})
        return situation(now, prop, [sl], nodes(), logs, ev + side_events(app, 0.2), side_notes(app, 0.2),
                         side_recent(app, 0.2)), "reject", True, why
    return f


def f_crashloop_events():
    app, prop, sl = up()
    _, now = now_time()
    ev = [{"ago": secs(5, 200), "what": fill(rng.choice(CRASH_EV), app)} for _ in range(rng.choice([1, 2, 2, 3]))]
    starts = [f"INFO starting {app[1]} v{fill('{ver}')}", f"Starting {app[1]}... listening on :{fill('{lport}')}",
              f'{{"level":"info","msg":"boot","service":"{app[1]}"}}']
    logs = [log(app, secs(3, 60), rng.choice(starts)) for _ in range(rng.randint(0, 2))] + background(app, rng.choice([0, 1, 2]))
    return situation(now, prop, [sl], nodes(), logs, ev + side_events(app, 0.15), side_notes(app, 0.2)), \
        "reject", True, "the events show the copies crash-looping; more copies would crash too"


def f_warmup():
    app, prop, sl = up(rules=["latency-high", "latency-high", "cpu-high", "calls-high"], service=True)
    _, now = now_time()
    ver = fill("{ver}")
    ev = [{"ago": f"{rng.randint(1, 6)}m", "what": rng.choice([
        f"rollout of {app[0]}/{app[1]} to version {ver} started",
        f"rollout of {app[0]}/{app[1]} to version {ver} finished",
        f"deploy {ver} of {app[0]}/{app[1]}: {rng.randint(1, 3)} of {rng.randint(3, 6)} copies replaced",
        f"{app[0]}/{app[1]} restarted for config reload",
        f"new image {app[1]}:{ver} rolled out by {rng.choice(PEOPLE)}"])}]
    logs = [log(app, secs(2, 200), fill(l, app)) for l in rng.sample(WARMUP, rng.choice([1, 2, 2, 3]))]
    logs += background(app, rng.choice([0, 1]))
    return situation(now, prop, [sl], nodes(), logs, ev + side_events(app, 0.15), side_notes(app, 0.15)), \
        "reject", True, "the rise is a warm-up after the deploy and will pass"


def hold_note(app, direction, in_force, now_m):
    s, svc = f"{app[0]}/{app[1]}", app[1]
    pool = HOLD_ANY + (HOLD_IN if direction == "down" else HOLD_OUT)
    phrase, ago = hold_time(now_m, in_force)
    return note(rng.choice(pool).format(s=s, svc=svc, until=phrase, inc=rng.randint(1000, 9999)), ago)


def f_hold(in_force):
    def f():
        app, prop, sl = up() if rng.random() < 0.65 else down()
        direction = "up" if prop["scale"]["to"] > prop["scale"]["from"] else "down"
        now_m, now = now_time()
        ev = []
        if rng.random() < 0.15:  # a drill whose end the events tell
            n = note(rng.choice(DRILL).format(s=f"{app[0]}/{app[1]}", svc=app[1]), rng.randint(40, 180))
            ev.append({"ago": f"{rng.randint(20, 35)}m", "what": rng.choice(
                ["DR drill started", "failover drill in progress: region b serving", "game day drill began"])})
            if not in_force:
                ev.append({"ago": f"{rng.randint(2, 15)}m", "what": rng.choice(
                    ["DR drill finished, all clear", "failover drill ended; region a serving again",
                     "game day drill over"])})
        else:
            n = hold_note(app, direction, in_force, now_m)
        logs = background(app, rng.choice([0, 1, 2]))
        why = "the operator's hold is still in force" if in_force else "the hold has ended before now"
        return situation(now, prop, [sl], nodes(), logs, ev + side_events(app, 0.15),
                         [n] + side_notes(app, 0.2), side_recent(app, 0.15)), \
            ("reject" if in_force else "approve"), True, why
    return f


def peak_noted(app, prop, sl, side):
    """The proposal with a note announcing a peak soon (and unrelated events and notes)."""
    now_m, now = now_time()
    at, ago = peak_time(now_m)
    n = note(rng.choice(PEAK).format(s=f"{app[0]}/{app[1]}", svc=app[1], at=at), ago)
    return situation(now, prop, [sl], nodes(), background(app), side_events(app, 0.2), [n] + side_notes(app, side))


def f_peak_ahead():
    app, prop, sl = down()
    return peak_noted(app, prop, sl, 0.2), "reject", True, "a peak is announced shortly; keep the copies"


def job_nodes():
    return gpu_drain(k=rng.randint(4, 7))


def f_job_on():
    prop, ns, name = job_nodes()
    now_m, now = now_time()
    phrase, ago = hold_time(now_m, True)
    n = note(rng.choice(JOB_ON).format(n=name, until=phrase, model=rng.choice(MODELS)), ago)
    app = rng.choice(APPS)
    return situation(now, prop, None, ns, background(app, rng.choice([0, 1])), side_events(app, 0.2),
                     [n] + side_notes(app, 0.15)), "reject", True, "a job that must not be interrupted runs on the node"


# --- text decides: approve --------------------------------------------------------------------

def f_overload():
    app, prop, sl = up(service=True)
    if rng.random() < 0.7:
        sl["error_rate"] = round(rng.uniform(0.05, 0.35), 3)
        prop["inputs"]["error_rate"] = f"{sl['error_rate']:.4f}"
        prop["inputs"]["waiting"] = str(rng.randint(20, 900))
    _, now = now_time()
    lines = rng.sample(OVERLOAD, rng.choice([1, 2, 2, 3]))
    logs = []
    for l in lines:
        logs.append(log(app, secs(1, 60), fill(l, app)))
        if rng.random() < 0.3:
            logs.append(log(app, secs(1, 60), fill(l, app)))
    logs += background(app, rng.choice([0, 1, 1]))
    return situation(now, prop, [sl], nodes(), logs, side_events(app, 0.2), side_notes(app, 0.2), side_recent(app, 0.15)), \
        "approve", True, "the errors are the overload itself; more copies relieve it"


REJECT_VOCABS = {}  # filled below


def f_stale():
    app, prop, sl = up()
    _, now = now_time()
    vocab = rng.choice(list(REJECT_VOCABS.values()))
    old = fill(rng.choice(vocab), app)
    h = rng.randint(2, 14)
    logs = [log(app, f"{h}h", old) for _ in range(rng.choice([1, 2, 3]))]
    logs += [log(app, secs(1, 90), fill(rng.choice(HEALTHY), app)) for _ in range(rng.choice([1, 2, 2]))]
    logs += background(app, rng.choice([0, 1]))
    return situation(now, prop, [sl], nodes(), logs, side_events(app, 0.2), side_notes(app, 0.2)), \
        "approve", True, f"the errors are {h} hours old and the copies are healthy since"


def f_noise():
    app, prop, sl = up()
    _, now = now_time()
    for _ in range(50):
        lines = rng.sample(HARMLESS, rng.choice([2, 2, 3, 4]))
        if any(is_error(fill(l)) for l in lines):
            break
    logs = [log(app, secs(1, 200), fill(l, app)) for l in lines]
    logs += [log(app, secs(1, 90), fill(rng.choice(HEALTHY), app)) for _ in range(rng.choice([0, 1]))]
    return situation(now, prop, [sl], nodes(), logs, side_events(app, 0.2), side_notes(app, 0.2)), \
        "approve", True, "the log lines are harmless noise"


def f_fixed():
    app, prop, sl = up()
    _, now = now_time()
    fix_at = rng.randint(5, 40)
    crash_at = fix_at + rng.randint(10, 80)
    kind = rng.choice(list(FIXES))
    line = fill(rng.choice(REJECT_VOCABS[kind]), app)
    logs = [log(app, f"{crash_at + rng.randint(0, 5)}m", line) for _ in range(rng.choice([1, 2, 3]))]
    logs += [log(app, secs(1, 120), fill(rng.choice(HEALTHY), app)) for _ in range(rng.choice([1, 2]))]
    ev = [{"ago": f"{crash_at}m", "what": fill(rng.choice(CRASH_EV), app)},
          {"ago": f"{fix_at}m", "what": fill(rng.choice(FIXES[kind] + GENERIC_FIX), app)}]
    return situation(now, prop, [sl], nodes(), logs, ev, side_notes(app, 0.2)), \
        "approve", True, "the crash was fixed by a later change; the copies are healthy since"


def f_batch():
    app, prop, sl = up()
    _, now = now_time()
    logs = [log(app, secs(5, 300), fill(l, app)) for l in rng.sample(BATCH, rng.choice([1, 2]))]
    logs += background(app, rng.choice([0, 1, 2]))
    return situation(now, prop, [sl], nodes(), logs, side_events(app, 0.2), side_notes(app, 0.2)), \
        "approve", True, "the job summaries report zero failures"


def f_peak_up():
    app = rng.choice(APPS)
    if rng.random() < 0.5:
        frm = rng.randint(2, 6)
        prop, sl, _ = make_scale(app, "forecast", frm, to=frm + rng.choice([1, 2]))
    else:
        app, prop, sl = up(app)
    return peak_noted(app, prop, sl, 0.15), "approve", True, "the announced peak calls for the extra copies"


def f_support():
    if rng.random() < 0.65:
        app, prop, sl = up()
        pool = SUPPORT_UP
    else:
        app, prop, sl = down()
        pool = SUPPORT_DOWN
    _, now = now_time()
    n = note(rng.choice(pool).format(s=f"{app[0]}/{app[1]}", svc=app[1]), rng.randint(10, 400))
    return situation(now, prop, [sl], nodes(), background(app), side_events(app, 0.2), [n] + side_notes(app, 0.15)), \
        "approve", True, "the operator's note supports it"


def f_job_done():
    prop, ns, name = job_nodes()
    now_m, now = now_time()
    model = rng.choice(MODELS)
    ev = []
    if rng.random() < 0.5:
        phrase, ago = hold_time(now_m, False)
        n = note(rng.choice(JOB_ON).format(n=name, until=phrase, model=model), ago)
    else:
        phrase, ago = hold_time(now_m, True)
        n = note(rng.choice(JOB_ON).format(n=name, until=phrase, model=model), ago)
        ev.append({"ago": f"{rng.randint(2, 9)}m", "what": rng.choice(JOB_DONE_EV).format(n=name, model=model, id=fill("{id}"))})
    app = rng.choice(APPS)
    return situation(now, prop, None, ns, background(app, rng.choice([0, 1])), ev + side_events(app, 0.15),
                     [n] + side_notes(app, 0.15)), "approve", True, "the job on the node has finished"
REJECT_VOCABS.update({"oom": OOM, "config": CONFIG, "bad-flag": BADFLAG, "migration": MIGRATION,
                      "dep-down": DEPDOWN, "dep-auth": DEPAUTH, "cert": CERT, "disk-full": DISK,
                      "quota": QUOTA, "port-in-use": PORT, "segfault": SEGV, "db-slots": DBSLOTS,
                      "upstream-5xx": UP5XX})
REJECT_WHY = {
    "oom": "the copies run out of memory at start; more copies would too",
    "config": "a missing or invalid config, secret or file; every copy fails the same way",
    "bad-flag": "a bad command-line flag; new copies cannot start either",
    "migration": "the schema does not match the code; more copies share the fault",
    "dep-down": "a dependency is down or refusing; more copies cannot reach it either",
    "dep-auth": "the credentials for a dependency fail; more copies fail the same",
    "cert": "an expired or untrusted certificate; more copies fail the handshake too",
    "disk-full": "the disk or volume is full; more copies cannot write either",
    "quota": "a vendor quota or licence is exhausted; more copies cannot help",
    "port-in-use": "the port is taken; new copies cannot bind",
    "segfault": "the copies crash on start; more copies would crash too",
    "db-slots": "the database is out of connection slots; more copies make it worse",
    "upstream-5xx": "the upstream fails for everyone; more copies cannot help",
}
CRASHY = {"oom", "config", "bad-flag", "migration", "segfault", "port-in-use", "cert", "disk-full"}

FAMILIES = [  # name, count, builder
    ("load-up", 55, f_load_up), ("load-down", 35, f_load_down), ("forecast-in", 25, f_forecast_in),
    ("vetoed", 25, f_vetoed), ("flap", 20, f_flap), ("overshoot-up", 30, f_over_up),
    ("undershoot-up", 22, f_under_up), ("overshoot-down", 18, f_over_down),
    ("drain-few", 22, f_drain_few), ("gpu-hot", 20, f_gpu_hot), ("undrain", 15, f_undrain),
] + [(k, 12, log_fault(v, REJECT_WHY[k], k in CRASHY)) for k, v in REJECT_VOCABS.items()] + [
    ("crashloop", 14, f_crashloop_events), ("warmup", 16, f_warmup), ("hold-on", 22, f_hold(True)),
    ("peak-ahead", 12, f_peak_ahead), ("job-on", 10, f_job_on),
    ("overload", 40, f_overload), ("stale-error", 25, f_stale), ("noise", 28, f_noise),
    ("fixed", 20, f_fixed), ("batch-ok", 14, f_batch), ("hold-off", 25, f_hold(False)),
    ("peak-up", 12, f_peak_up), ("note-yes", 14, f_support), ("job-done", 10, f_job_done),
]


# ---------------------------------------------------------------------------------------------
# Twin families (written after the 705 above, from the same generator's later draws, so those
# regenerate byte for byte). Each builds a pair on the same numbers (no risk: no recent veto of
# the same action within 15 minutes, no flapping, the proportional step) whose words differ a
# little and flip the verdict: an error that ended or goes on, a window passed or in force, a
# welcome or a harmful spike, a warning or the fault beside it. The reviewer's head tended to
# object to alarming words alone; these teach it to read when and whether.

# Connection resets and refusals from a dependency (a fault more copies cannot help while it lasts).
RESET = [
    "Error: read ECONNRESET",
    "Error: socket hang up (code ECONNRESET) calling https://{dom}/v1",
    "java.net.SocketException: Connection reset",
    "requests.exceptions.ConnectionError: ('Connection aborted.', ConnectionResetError(104, 'Connection reset by peer'))",
    'level=error msg="query failed" db={db} err="read tcp {ip}:5{k}->{ip}:5432: read: connection reset by peer"',
    '{{"level":"error","msg":"cache read failed","err":"ECONNRESET","host":"{cache}"}}',
    "[error] recv() failed (104: Connection reset by peer) while reading response header from upstream",
    "io.grpc.StatusRuntimeException: UNAVAILABLE: io exception (connection reset)",
    "{svc}.service: upstream {db}: connection reset by peer, retrying",
    "ERROR [pool-{n}-thread-{k}] c.{bp}.Repo - I/O error: Connection reset by peer",
]
# (resolved, ongoing): the same event with the opposite news, by index.
DEP_EV = [
    ("incident INC-{k} resolved: {svc}'s backend is reachable again",
     "incident INC-{k} open: {svc}'s backend still unreachable"),
    ("network fix applied by {who}; the connection resets on {slice} stopped",
     "network fix by {who} did not help; the connection resets on {slice} go on"),
    ("dependency of {slice} recovered; 0 connection errors since",
     "dependency of {slice} still down; connection errors every few seconds"),
    ("{slice} reconnected to its backends after the failover",
     "{slice} still cannot reach its backends; failover not done yet"),
    ("status page: the outage behind {svc}'s errors is over, all checks green",
     "status page: the outage behind {svc}'s errors is ongoing, checks red"),
    ("ECONNRESET burst on {slice} ended when the load balancer was fixed",
     "ECONNRESET burst on {slice} continues; load balancer fix not deployed yet"),
    ("{db} is back after the restart; {svc} queries succeed again",
     "{db} still restarting; every query from {svc} fails"),
    ("DNS fixed by {who}; {svc} resolves its dependencies again",
     "DNS still broken; {svc} cannot resolve its dependencies"),
]
DEP_NOTE = [
    ("the resets on {svc} this morning were the LB, fixed, ignore them",
     "the resets on {svc} are the LB, not fixed yet, more copies won't help"),
    ("db blip earlier is over, {s} is fine now",
     "db is still flapping, {s} errors are real and ongoing"),
    ("those connection errors on {svc} were the vendor's outage, it ended",
     "those connection errors on {svc} are the vendor's outage, still going on"),
]
RAISE_EV = [
    "memory limit of {slice} raised to {gib}Gi by {who}",
    "{slice} redeployed with -Xmx{gib}g",
    "config change: {svc} heap {mib}m -> {gib}g, rolled out",
    "{who} bumped {svc}'s memory limit to {gib}Gi",
    "NODE_OPTIONS=--max-old-space-size={gib}000 rolled out to {slice}",
    "systemd: MemoryMax={gib}G set for {svc}.service, unit restarted",
    "helm upgrade {svc}: resources.limits.memory {mib}Mi -> {gib}Gi",
]
OOM_AFTER = [  # (clean since the raise, still killed after it)
    ("{inst} ready; 0 restarts since the limit change", "{inst} OOMKilled again after the limit change, restart {k}"),
    ("no OOM kills on {slice} since the raise", "OOM kills on {slice} go on after the raise"),
    ("{slice}: all copies up since the raise, restarts 0", "{slice}: copies still restarting after the raise ({k} restarts)"),
    ("memory of {slice} steady at {pct}% of the new limit", "memory of {slice} hits the new limit within minutes; killed again"),
    ("{svc}.service: running, no oom-kill since the change", "{svc}.service: Failed with result 'oom-kill' again since the change"),
]
FIX_WHAT = {"config": "missing secret", "bad-flag": "bad flag in the manifest", "migration": "schema migration",
            "segfault": "start-up crash", "cert": "expired cert", "dep-auth": "rotated db password",
            "disk-full": "full volume", "port-in-use": "port clash", "oom": "heap size"}
FIX_NOTE = [  # (fixed, not yet)
    ("fixed the {what} on {s}, restarts since are clean", "still looking into the {what} on {s}, restarts keep coming"),
    ("{what} sorted out ({who} pushed the fix), {svc} stable since", "{what} not sorted yet ({who} is on it), {svc} keeps crashing"),
    ("ok the {what} was the culprit, rolled back, {s} healthy again", "ok the {what} is the culprit, rollback not done yet, {s} still crashing"),
    ("root cause ({what}) fixed at {t}; the errors are from before that", "root cause ({what}) found at {t} but not fixed; the errors go on"),
    ("mitigated: {what} corrected at {t}, no crashes after", "not mitigated: {what} fix still pending since {t}, crashes continue"),
    ("{svc}: {what} resolved, you can ignore the old stack traces", "{svc}: {what} unresolved, the stack traces are current"),
]
WINDOW = [  # windows that forbid any change of the count
    "chaos drill on {s} {until}: we kill copies on purpose, keep the count fixed",
    "{svc} pinned at its current size {until} for the latency study",
    "code freeze for {s} {until}",
    "pinning {s} {until} while we bisect the memory growth",
    "no changes to {svc} {until}, the vendor is replaying traffic",
    "game day {until}: the count of {s} must not move",
    "{s}: hands off {until}, perf baseline being recorded",
    "please hold {svc} steady {until} (capacity audit)",
    "freeze on {s} {until} -- finance snapshot reads every copy",
    "chaos monkey runs against {svc} {until}; do not autoscale around it",
    "hey, DB team resizing the cluster behind {s} {until}, keep the count as is",
    "we're tracing {svc} {until}, any new or removed copy ruins the trace",
    "release freeze {until}; that includes {s}'s instance count",
    "FYI {svc} is part of the failover rehearsal {until}, don't touch",
]
WINDOW_UP = [  # load tests: the load is ours, no scale-up for it
    "load test against {svc} {until} -- the extra traffic is ours, don't scale for it",
    "k6 run hitting {s} {until}, leave its size alone",
    "soak test on {svc} {until}; we want to see it saturate at this size",
    "locust swarm against {s} {until}, the cpu spike is expected, no scaling",
]
WORD_H = {1: "one", 2: "two", 3: "three", 4: "four", 5: "five", 6: "six", 7: "seven", 8: "eight",
          9: "nine", 10: "ten", 11: "eleven", 12: "twelve"}


def abs_phrase(end, start):
    """A window's end said as people say it (and sometimes its start)."""
    h = end // 60
    forms = [f"until {hhmm(end)}", f"until {hhmm(end)} UTC", f"till {h12(end)}", f"up to {hhmm(end)}z",
             f"from {hhmm(start)} to {hhmm(end)} UTC", f"{hhmm(start)}-{hhmm(end)}", f"through {h12(end)}",
             f"till {hhmm(end)}"]
    if 13 <= h <= 19:
        w = WORD_H[h - 12]
        if end % 60 == 30:
            forms += [f"till half past {w}", f"-- back by half past {h - 12}", f"until half past {h - 12}"]
        elif end % 60 == 15:
            forms += [f"until quarter past {w}"]
        elif end % 60 == 45:
            forms += [f"until quarter to {WORD_H[h - 11] if h < 19 else 'eight'}"]
        else:
            forms += [f"till {h - 12} o'clock", f"until {w} this afternoon" if h < 18 else f"until {h - 12}pm"]
    return rng.choice(forms)


def rel_phrase():
    """A window told as a length from when the note was written: (phrase, minutes)."""
    dur, words = rng.choice([(30, ["for half an hour", "for 30 min", "for the next 30 minutes"]),
                             (45, ["for 45 minutes", "for about 45 min", "for the next three quarters of an hour"]),
                             (60, ["for an hour", "for the next hour", "for 1h", "for about an hour"]),
                             (90, ["for 90 min", "for an hour and a half", "for the next 90 minutes"]),
                             (120, ["for two hours", "for the next 2h", "for 2 hrs", "for a couple of hours"]),
                             (180, ["for three hours", "for the next 3 hours", "for 3h"]),
                             (240, ["for four hours", "for the next 4h"])])
    return rng.choice(words), dur


def ago_exact(m):
    """Minutes ago said exactly (ago_s rounds hours down)."""
    return f"{m // 60}h" if m % 60 == 0 and m >= 60 else f"{m}m"


def now_at(m, day):
    return f"{day}T{m // 60:02d}:{m % 60:02d}:{rng.randint(0, 59):02d}Z"


def scale_any():
    """A scale-up or a scale-in whose numbers need exactly the step proposed."""
    return up() if rng.random() < 0.6 else down()


def twins(prop, sl, ns, a, b):
    """Two labelled situations on the same numbers: a and b give now, logs, events, notes and recent
    (lists of equal lengths, shuffled alike), expect and why."""
    perm = {}
    for k in ("logs", "events", "notes"):
        assert len(a.get(k, [])) == len(b.get(k, [])), k
        perm[k] = rng.sample(range(len(a.get(k, []))), len(a.get(k, [])))
    out = []
    for v in (a, b):
        doc = {"now": v["now"], "proposal": json.loads(json.dumps(prop))}
        if sl:
            doc["slices"] = [dict(sl)]
        doc["nodes"] = json.loads(json.dumps(ns))
        if v.get("recent"):
            doc["recent"] = v["recent"]
        for k in ("logs", "events", "notes"):
            if v.get(k):
                doc[k] = [v[k][j] for j in perm[k]]
        out.append((doc, v["expect"], True, v["why"]))
    rng.shuffle(out)
    return out


def styled2(a, b):
    """Two notes styled alike (the same casing, abbreviation, typo draw and sign-off)."""
    st = rng.getstate()
    x = styled(a)
    rng.setstate(st)
    return x, styled(b)


def t_dep_recovered():
    app, prop, sl = up()
    now_m, now = now_time()
    vocab = RESET + DEPDOWN
    line = fill(rng.choice(vocab), app)
    copies = rng.choice([1, 2, 3, 3])
    old = rng.randint(25, 300)
    ages_ok = [f"{old + rng.randint(0, 20)}m" if old < 100 else f"{(old + 30) // 60}h" for _ in range(copies)]
    ages_bad = list(ages_ok) if rng.random() < 0.4 else [secs(1, 90) for _ in range(copies)]
    bg = [log(app, secs(1, 120), fill(rng.choice(HEALTHY), app)) for _ in range(rng.choice([1, 2]))] + background(app, rng.choice([0, 1]))
    inst_ = [inst(app) for _ in range(copies)]
    side_n, side_e = side_notes(app, 0.2), side_events(app, 0.2)
    when = f"{rng.randint(3, max(4, old - 10))}m"
    by = rng.choice(PEOPLE)
    if rng.random() < 0.65:
        d = {"k": rng.randint(1000, 9999), "who": rng.choice(PEOPLE), "db": rng.choice(DBS)}
        ok, bad = (x.format(svc=app[1], slice=f"{app[0]}/{app[1]}", **d) for x in rng.choice(DEP_EV))
        dec_ok, dec_bad = [{"ago": when, "what": ok}], [{"ago": when, "what": bad}]
        ev_ok, ev_bad, no_ok, no_bad = dec_ok, dec_bad, [], []
    else:
        ok, bad = (x.format(s=f"{app[0]}/{app[1]}", svc=app[1]) for x in rng.choice(DEP_NOTE))
        text_ok, text_bad = styled2(ok, bad)
        ev_ok = ev_bad = []
        no_ok = [{"ago": when, "by": by, "text": text_ok}]
        no_bad = [{"ago": when, "by": by, "text": text_bad}]
    lg_ok = [{"instance": i, "ago": a, "line": line} for i, a in zip(inst_, ages_ok)] + bg
    lg_bad = [{"instance": i, "ago": a, "line": line} for i, a in zip(inst_, ages_bad)] + bg
    return twins(prop, sl, nodes(), {
        "now": now, "logs": lg_ok, "events": ev_ok + side_e, "notes": no_ok + side_n, "expect": "approve",
        "why": "the dependency errors ended before now; the copies are healthy and the load is real"}, {
        "now": now, "logs": lg_bad, "events": ev_bad + side_e, "notes": no_bad + side_n, "expect": "reject",
        "why": "the dependency is still failing; more copies cannot reach it either"})


def t_oom_raised():
    app, prop, sl = up()
    now_m, now = now_time()
    raise_at = rng.randint(15, 150)
    line = fill(rng.choice(OOM), app)
    copies = rng.choice([1, 2, 2, 3])
    inst_ = [inst(app) for _ in range(copies)]
    before = [f"{raise_at + rng.randint(10, 90)}m" for _ in range(copies)]
    after = [f"{rng.randint(1, max(2, raise_at // 3))}m" if rng.random() < 0.5 else secs(5, 120) for _ in range(copies)]
    bg = [log(app, secs(1, 200), fill(rng.choice(HEALTHY), app)) for _ in range(rng.choice([1, 2]))] + background(app, rng.choice([0, 1]))
    raise_ev = {"ago": f"{raise_at}m", "what": fill(rng.choice(RAISE_EV), app)}
    pair = rng.choice(OOM_AFTER)
    d = {"inst": inst(app), "slice": f"{app[0]}/{app[1]}", "svc": app[1], "k": rng.randint(3, 14), "pct": rng.randint(40, 75)}
    ok, bad = (x.format(**d) for x in pair)
    when = f"{rng.randint(1, max(2, raise_at - 5))}m"
    side_n, side_e = side_notes(app, 0.2), side_events(app, 0.15)
    crash = {"ago": before[0], "what": fill(rng.choice(CRASH_EV), app)}
    return twins(prop, sl, nodes(), {
        "now": now, "logs": [{"instance": i, "ago": a, "line": line} for i, a in zip(inst_, before)] + bg,
        "events": [crash, raise_ev, {"ago": when, "what": ok}] + side_e, "notes": side_n, "expect": "approve",
        "why": "the OOM kills came before the memory limit was raised; clean since, the load is real"}, {
        "now": now, "logs": [{"instance": i, "ago": a, "line": line} for i, a in zip(inst_, after)] + bg,
        "events": [crash, raise_ev, {"ago": when, "what": bad}] + side_e, "notes": side_n, "expect": "reject",
        "why": "the copies are still killed for memory after the raise; more copies would be too"})


def t_fix_noted():
    app, prop, sl = up()
    now_m, now = now_time()
    kind = rng.choice(list(FIX_WHAT))
    err_at = rng.randint(20, 150)
    lines = [fill(rng.choice(REJECT_VOCABS[kind]), app)]
    logs = [log(app, f"{err_at + rng.randint(0, 15)}m", lines[0]) for _ in range(rng.choice([1, 2, 3]))]
    logs += [log(app, f"{rng.randint(5, err_at)}m", fill(rng.choice(REJECT_VOCABS[kind]), app)) for _ in range(rng.choice([0, 1]))]
    logs += background(app, rng.choice([0, 1, 2]))
    ev = [{"ago": f"{err_at + rng.randint(0, 10)}m", "what": fill(rng.choice(CRASH_EV), app)}] if rng.random() < 0.6 else []
    ev += side_events(app, 0.15)
    at = rng.randint(3, max(4, err_at - 10))
    d = {"what": FIX_WHAT[kind], "s": f"{app[0]}/{app[1]}", "svc": app[1], "who": rng.choice(PEOPLE),
         "t": hhmm(now_m - at - rng.randint(1, 5))}
    ok, bad = styled2(*(x.format(**d) for x in rng.choice(FIX_NOTE)))
    by = rng.choice(PEOPLE)
    side_n = side_notes(app, 0.2)
    return twins(prop, sl, nodes(), {
        "now": now, "logs": logs, "events": ev, "notes": [{"ago": f"{at}m", "by": by, "text": ok}] + side_n,
        "expect": "approve", "why": "the operator says the fault was fixed; the errors are from before the fix"}, {
        "now": now, "logs": logs, "events": ev, "notes": [{"ago": f"{at}m", "by": by, "text": bad}] + side_n,
        "expect": "reject", "why": "the operator says the fault is not fixed; more copies would fail the same way"})


def window_pool(prop):
    return WINDOW + (WINDOW_UP if prop["scale"]["to"] > prop["scale"]["from"] else [])


def t_window_abs():
    app, prop, sl = scale_any()
    day = rng.choice(DAYS)
    end = rng.randrange(9 * 60, 20 * 60 + 1, 15)
    start = end - rng.choice([60, 90, 120, 180])
    now_ok = end + rng.choice([15, 20, 30, 45, 60, 90, 120, 150])
    now_bad = end - rng.choice([15, 20, 30, 45, 60, 90])
    wrote = min(now_bad, start) - rng.randint(10, 150)
    text = styled(rng.choice(window_pool(prop)).format(s=f"{app[0]}/{app[1]}", svc=app[1], until=abs_phrase(end, start)))
    by = rng.choice(PEOPLE)
    bg = background(app, rng.choice([0, 1, 2]))
    side_n, side_e = side_notes(app, 0.2), side_events(app, 0.2)
    ns = nodes()
    return twins(prop, sl, ns, {
        "now": now_at(now_ok, day), "logs": bg, "events": side_e,
        "notes": [{"ago": ago_s(now_ok - wrote), "by": by, "text": text}] + side_n, "expect": "approve",
        "why": f"the window ended at {hhmm(end)}, before now"}, {
        "now": now_at(now_bad, day), "logs": bg, "events": side_e,
        "notes": [{"ago": ago_s(now_bad - wrote), "by": by, "text": text}] + side_n, "expect": "reject",
        "why": f"the window lasts until {hhmm(end)}, after now"})


def t_window_rel():
    app, prop, sl = scale_any()
    now_m, now = now_time()
    phrase, dur = rel_phrase()
    text = styled(rng.choice(window_pool(prop)).format(s=f"{app[0]}/{app[1]}", svc=app[1], until=phrase))
    by = rng.choice(PEOPLE)
    ago_ok = dur + rng.choice([30, 45, 60, 90, 120, 180])
    ago_bad = rng.randint(5, dur - 15)
    bg = background(app, rng.choice([0, 1, 2]))
    side_n, side_e = side_notes(app, 0.2), side_events(app, 0.2)
    return twins(prop, sl, nodes(), {
        "now": now, "logs": bg, "events": side_e, "notes": [{"ago": ago_exact(ago_ok), "by": by, "text": text}] + side_n,
        "expect": "approve", "why": f"the note's {dur}-minute window ended {ago_ok - dur} minutes ago"}, {
        "now": now, "logs": bg, "events": side_e, "notes": [{"ago": ago_exact(ago_bad), "by": by, "text": text}] + side_n,
        "expect": "reject", "why": f"the note's {dur}-minute window has {dur - ago_bad} minutes to run"})


VETO_WINDOW = [
    "load test {until}, leave {svc} alone",
    "freeze {until}",
    "chaos drill on {svc} {until}",
    "pinned for the benchmark {until}",
    "not during the release {until}",
    "hold {until}: audit reads every copy",
]
VETO_CAUSE = [  # (reason, over, still so)
    ("{db} maintenance running, wait", "{db} maintenance finished, replicas in sync", "{db} maintenance still running (step {n} of 6)"),
    ("investigating the error spike first", "error spike on {slice} explained and fixed (bad deploy rolled back)",
     "error spike on {slice} still under investigation"),
    ("wait for the {ver} deploy", "deploy {ver} of {slice} finished", "deploy {ver} of {slice} in progress ({n} of 9 copies)"),
    ("INC-{k} open, no changes", "INC-{k} closed by {who}", "INC-{k} still open, bridge active"),
    ("region failover in progress", "failover back to the primary region complete", "region failover still in progress"),
    ("node pool upgrade, hold", "node pool upgrade done, all nodes ready", "node pool upgrade at {pct}%, nodes cycling"),
    ("cost cap reached for today", "finance raised today's cost cap for {slice}", "cost cap for {slice} still reached, no raise"),
]


def t_veto_stale():
    app, prop, sl = scale_any()
    s = prop["scale"]
    day = rng.choice(DAYS)
    by = rng.choice(PEOPLE)
    vid = rng.randint(5, 400)
    side_n, side_e = side_notes(app, 0.2), side_events(app, 0.15)
    bg = background(app, rng.choice([0, 1, 2]))
    ns = nodes()
    if rng.random() < 0.5:
        end = rng.randrange(9 * 60, 20 * 60 + 1, 15)
        start = end - rng.choice([60, 90, 120])
        now_ok = end + rng.choice([20, 30, 45, 60, 90, 120])
        now_bad = end - rng.choice([15, 20, 30, 45, 60])
        at = min(now_bad - rng.randint(20, 90), start + 10)
        reason = rng.choice(VETO_WINDOW).format(svc=app[1], until=abs_phrase(end, start))
        rec = lambda now_m: [{"id": vid, "scale": dict(s), "status": "vetoed", "ago": ago_s(now_m - at), "by": by,
                              "reason": reason}]
        return twins(prop, sl, ns, {
            "now": now_at(now_ok, day), "recent": rec(now_ok), "logs": bg, "events": side_e, "notes": side_n,
            "expect": "approve", "why": f"the veto was for a window that ended at {hhmm(end)}; it no longer holds"}, {
            "now": now_at(now_bad, day), "recent": rec(now_bad), "logs": bg, "events": side_e, "notes": side_n,
            "expect": "reject", "why": f"the veto's window lasts until {hhmm(end)}; its reason still holds"})
    now_m, now = now_time()
    d = {"db": rng.choice(DBS), "slice": f"{app[0]}/{app[1]}", "ver": fill("{ver}"), "n": rng.randint(2, 5),
         "k": rng.randint(1000, 9999), "who": rng.choice(PEOPLE), "pct": rng.randint(20, 80)}
    reason, ok, bad = (x.format(**d) for x in rng.choice(VETO_CAUSE))
    vago = rng.randint(20, 240)
    rec = [{"id": vid, "scale": dict(s), "status": "vetoed", "ago": ago_s(vago), "by": by, "reason": reason}]
    when = f"{rng.randint(2, vago - 5)}m"
    return twins(prop, sl, ns, {
        "now": now, "recent": rec, "logs": bg, "events": [{"ago": when, "what": ok}] + side_e, "notes": side_n,
        "expect": "approve", "why": "the veto's reason is over, as the events tell"}, {
        "now": now, "recent": rec, "logs": bg, "events": [{"ago": when, "what": bad}] + side_e, "notes": side_n,
        "expect": "reject", "why": "the veto's reason still holds, as the events tell"})


PIN = [  # (an open-ended hold, lifted, kept)
    ("pinning {s} at its current size until further notice", "unpinned {s}, scale as needed", "{s} stays pinned, leave it"),
    ("freeze on {svc} until I say otherwise", "freeze on {svc} lifted", "freeze on {svc} extended to tomorrow"),
    ("{s}: hold the count while we debug the leak", "done debugging, {s} is free to scale again",
     "still debugging, keep {s} as is"),
    ("no scaling on {svc} until INC-{k} is closed", "INC-{k} closed, changes to {svc} ok again",
     "INC-{k} still open, no changes to {svc}"),
    ("hands off {s} during the chaos drill, will post when done", "chaos drill done, {s} back to normal ops",
     "chaos drill running longer than planned, hands off {s}"),
    ("chaos drill on {svc}: keep the count fixed until I post all clear", "all clear on {svc}, the autoscaler may act",
     "no all clear yet on {svc}, keep the count"),
    ("{svc} frozen while the auditors are in", "auditors are done, {svc} unfrozen", "auditors still here, {svc} stays frozen"),
    ("don't resize {s}, profiling session running", "profiling of {s} finished, resize away",
     "profiling of {s} still running, don't resize"),
]


def t_pin_lifted():
    app, prop, sl = scale_any()
    now_m, now = now_time()
    d = {"s": f"{app[0]}/{app[1]}", "svc": app[1], "k": rng.randint(1000, 9999)}
    hold, ok, bad = (x.format(**d) for x in rng.choice(PIN))
    hold = styled(hold)
    ok, bad = styled2(ok, bad)
    first = rng.randint(60, 400)
    later = rng.randint(3, first // 60 * 60 - 20)
    by, by2 = rng.choice(PEOPLE), rng.choice(PEOPLE) if rng.random() < 0.5 else None
    by2 = by2 or by
    bg = background(app, rng.choice([0, 1, 2]))
    side_n, side_e = side_notes(app, 0.2), side_events(app, 0.15)
    n1 = {"ago": ago_s(first), "by": by, "text": hold}
    return twins(prop, sl, nodes(), {
        "now": now, "logs": bg, "events": side_e, "notes": [n1, {"ago": f"{later}m", "by": by2, "text": ok}] + side_n,
        "expect": "approve", "why": "a later note lifts the hold"}, {
        "now": now, "logs": bg, "events": side_e, "notes": [n1, {"ago": f"{later}m", "by": by2, "text": bad}] + side_n,
        "expect": "reject", "why": "a later note keeps the hold in force"})


SPIKE_UP = [  # (welcome demand, harmful load): scale-up right or wrong
    ("TV spot for {bp} airs in {m} min", "synthetic load test on {svc} starts in {m} min; the count must stay fixed for the measurement"),
    ("email campaign to {k}0k {bp} users went out {m} min ago", "scraper bot hitting {svc} since {m} min ago; WAF rule goes live shortly, don't scale for it"),
    ("{bp} app featured on the store front page since {m} min", "retry storm from broken client {ver} since {m} min; the fix ships now, don't scale for it"),
    ("push notification to all {bp} users goes out in {m} min", "replay of the dead-letter queue into {svc} in {m} min; it must run at the current size"),
    ("press coverage of {bp} since {m} min, real users arriving", "credential-stuffing attack on {svc} since {m} min; blocking it, adding copies only feeds it"),
    ("flash sale on {bp} opened {m} min ago", "our own soak test on {svc} began {m} min ago; we want it saturated at this size"),
    ("partner {vendor} launched its integration with {svc} {m} min ago", "partner {vendor} is sending a runaway loop of duplicate calls since {m} min; they are fixing it, don't scale"),
    ("live match started {m} min ago, {svc} demand rising", "chaos experiment injecting fake load into {svc} for {m} min; do not autoscale"),
]
SPIKE_DOWN = [  # (peak over: scale-in right, peak coming: scale-in wrong)
    ("flash sale on {bp} ended {m} min ago", "flash sale on {bp} starts in {m} min"),
    ("TV spot aired an hour ago, traffic back to baseline", "TV spot airs in {m} min, expect x3"),
    ("match finished {m} min ago, {svc} demand falling", "match kicks off in {m} min, {svc} demand follows"),
    ("newsletter wave over, sent hours ago", "newsletter goes out in {m} min"),
    ("quarter-close jobs on {svc} finished {m} min ago", "quarter-close jobs on {svc} start in {m} min"),
    ("{bp} campaign ended, the promo codes expired {m} min ago", "{bp} campaign starts in {m} min, promo codes go live"),
    ("ticket drop done {m} min ago, sold out", "ticket drop opens in {m} min"),
    ("school day over, {svc} quiet till tomorrow", "school day starts in {m} min, {svc} ramps"),
]


def t_spike(direction):
    def f():
        app, prop, sl = up() if direction == "up" else down()
        now_m, now = now_time()
        d = {"bp": app[0], "svc": app[1], "m": rng.choice([3, 5, 8, 10, 15, 20]), "k": rng.randint(12, 90),
             "ver": fill("{ver}"), "vendor": rng.choice(VENDORS)}
        ok, bad = (x.format(**d) for x in rng.choice(SPIKE_UP if direction == "up" else SPIKE_DOWN))
        bg = background(app, rng.choice([0, 1, 2]))
        side_n, side_e = side_notes(app, 0.2), side_events(app, 0.2)
        when = f"{rng.randint(1, 3)}m" if rng.random() < 0.5 else secs(10, 90)
        if rng.random() < 0.5:
            mk = lambda t: {"events": [{"ago": when, "what": t}] + side_e, "notes": side_n}
        else:
            ok, bad = styled2(ok, bad)
            by = rng.choice(PEOPLE)
            mk = lambda t: {"events": side_e, "notes": [{"ago": when, "by": by, "text": t}] + side_n}
        if direction == "up":
            wa, wr = "the spike is real demand; the scale-up is right", "the spike is harmful or test load; do not scale for it"
        else:
            wa, wr = "the peak is over; fewer copies will do", "a peak starts in minutes; keep the copies"
        return twins(prop, sl, nodes(), dict(now=now, logs=bg, expect="approve", why=wa, **mk(ok)),
                     dict(now=now, logs=bg, expect="reject", why=wr, **mk(bad)))
    return f


BENIGN = [  # (a warning that says nothing against more copies, the fault beside it)
    ("DeprecationWarning: 'imp' is deprecated and slated for removal in 3.12",
     "ModuleNotFoundError: No module named 'imp' (removed in 3.12)"),
    ("WARN retry 2/3 calling {db} succeeded", "ERROR retry 3/3 calling {db} failed: connection refused, giving up"),
    ("INFO GC pause (G1 Evacuation Pause) {ms}ms", "java.lang.OutOfMemoryError: GC overhead limit exceeded"),
    ("WARN certificate for {dom} expires in {days} days", "x509: certificate for {dom} expired {days} days ago"),
    ('level=warn msg="slow query" dur=1.{n}s table={word} done=true',
     'level=error msg="query failed" table={word} err="relation does not exist"'),
    ("(node:{pid}) [DEP0040] DeprecationWarning: The `punycode` module is deprecated",
     "Error: Cannot find module 'punycode' (required by /app/server.js)"),
    ("WARN disk {mnt} at 71% (alert at 80%)", "ERROR disk {mnt} at 100%: no space left on device"),
    ('{{"level":"warn","msg":"retrying publish","broker":"{broker}","attempt":2,"result":"ok"}}',
     '{{"level":"error","msg":"publish failed","broker":"{broker}","attempt":5,"err":"broker unavailable"}}'),
    ("nginx: [warn] the \"listen ... http2\" directive is deprecated",
     "nginx: [emerg] unknown directive \"http3\" in /etc/nginx/nginx.conf:{line}"),
    ("systemd: {svc}.service: Unit uses KillMode=none, which is deprecated",
     "systemd: {svc}.service: Failed with result 'exit-code' (restart {k})"),
    ("WARN license for {svc} expires in {days} days, renew soon", "FATAL license for {svc} expired; refusing to start"),
    ("go: GODEBUG setting x509sha1 is deprecated and will be removed",
     "panic: x509: certificate signed with SHA-1 rejected by {dom}"),
    ("WARN pool for {db}: 1 stale connection replaced", "ERROR pool for {db}: FATAL: too many clients already"),
    ("INFO token for {vendor} refreshed before expiry", "ERROR token for {vendor} expired; 401 on every call"),
    ("WARN config key 'workers' is deprecated, use 'worker_count'", "config error: unknown key 'workers' in {cfg}; exiting"),
    ("[GC concurrent-mark-end, 0.0{n} secs] slow GC cycle, heap {pct}% after mark",
     "FATAL ERROR: Reached heap limit Allocation failed - JavaScript heap out of memory"),
    ("WARN migration {mig} applied in {k}s (slower than usual)", "ERROR migration {mig} failed; refusing to start"),
    ("warning: unused import `std::fmt` (build log)",
     "thread 'main' panicked at src/main.rs:{line}: called `Result::unwrap()` on an `Err` value"),
    ("WARN dns lookup of {db} took {ms}0ms (cached now)", "ERROR dns lookup of {db}: no such host"),
    ("WARN kafka rebalance took {k}s; consumers resumed", "ERROR kafka consumer cannot join group: coordinator not available"),
    ('level=warn msg="redis latency spike" p99={ms}ms recovered=true', 'level=error msg="redis" err="NOAUTH Authentication required"'),
    ("FutureWarning: DataFrame.applymap has been deprecated", "AttributeError: 'DataFrame' object has no attribute 'applymap'"),
    ("INFO {vendor} sandbox returned 404 for a test key (ignored)", "ERROR {vendor} returned 401: api key revoked"),
    ("WARN TLS 1.1 client from {ip} refused (policy)", "ERROR TLS handshake to {db} failed: certificate verify failed"),
    ("WARN health check for {inst} was slow ({ms}0ms) but passed", "ERROR health check for {inst} failed 5 times; restarting"),
    ("OpenJDK warning: Option UseConcMarkSweepGC was removed, ignoring it",
     "Unrecognized VM option 'UseConcMarkSweepGC' Error: Could not create the Java Virtual Machine."),
    ("WARN uvicorn: --reload is not meant for production", "uvicorn: Error: Got unexpected extra argument (prod)"),
    ("WARN @ {hh} slow request {path} 1.{n}s (one-off, client upload)", "ERROR @ {hh} {path} 500: {db} connection refused"),
]


def t_benign():
    app, prop, sl = up()
    now_m, now = now_time()
    pairs = rng.sample(BENIGN, rng.choice([1, 1, 2]))
    logs_ok, logs_bad = [], []
    for a, b in pairs:
        st = rng.getstate()
        la = fill(a, app)
        rng.setstate(st)
        lb = fill(b, app)
        for _ in range(rng.choice([1, 1, 2])):
            i, ago = inst(app), secs(1, 240)
            logs_ok.append({"instance": i, "ago": ago, "line": la})
            logs_bad.append({"instance": i, "ago": ago, "line": lb})
    bg = [log(app, secs(1, 120), fill(rng.choice(HEALTHY), app)) for _ in range(rng.choice([0, 1, 2]))]
    side_n, side_e = side_notes(app, 0.2), side_events(app, 0.2)
    return twins(prop, sl, nodes(), {
        "now": now, "logs": logs_ok + bg, "events": side_e, "notes": side_n, "expect": "approve",
        "why": "the warnings say nothing against more copies; the load is real"}, {
        "now": now, "logs": logs_bad + bg, "events": side_e, "notes": side_n, "expect": "reject",
        "why": "the log shows a fault that more copies share"})


TWIN_FAMILIES = [  # name, pairs, builder (each pair: one approve, one reject)
    ("dep-recovered", 13, t_dep_recovered), ("oom-raised", 12, t_oom_raised), ("fix-noted", 13, t_fix_noted),
    ("window-abs", 13, t_window_abs), ("window-rel", 12, t_window_rel), ("veto-stale", 13, t_veto_stale),
    ("pin-lifted", 12, t_pin_lifted), ("spike-up", 13, t_spike("up")), ("spike-down", 12, t_spike("down")),
    ("benign-warn", 12, t_benign),
]


# ---------------------------------------------------------------------------------------------
# The check: every file read back against the situation format of src/controller/review/file.rs

TOP = {"now", "proposal", "slices", "nodes", "recent", "logs", "events", "notes", "label"}
SLICE_KEYS = {"name", "desired", "active", "min", "max", "cpu_per_instance", "cpu_reserved", "calls_per_s",
              "latency_ms", "target_latency_ms", "target_cpu", "error_rate", "waiting"}
NODE_KEYS = {"name", "state", "cpu", "mem", "gpu_util", "gpu_temp", "live"}
STATES = {"ready", "draining", "drained", "asleep", "down"}
STATUSES = {"proposed", "pending", "applied", "vetoed", "rejected", "superseded", "failed", "expired"}
DUR = re.compile(r"^\d+(s|m|h|d)$")
NOW = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$")
SLICE = re.compile(r"^[^/]+/[^/]+$")


def u32(v):
    return isinstance(v, int) and not isinstance(v, bool) and 0 <= v < 2 ** 32


def num(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def check_file(path):
    errs = []

    def need(cond, what):
        if not cond:
            errs.append(what)

    doc = json.load(open(path))
    need(set(doc) <= TOP, f"unknown top-level fields {set(doc) - TOP}")
    need("proposal" in doc, "no proposal")
    need(isinstance(doc.get("now"), str) and NOW.match(doc["now"]), "now is not an RFC 3339 time")
    p = doc.get("proposal", {})
    need(set(p) <= {"rule", "scale", "drain", "undrain", "why", "inputs"}, f"proposal fields {set(p)}")
    need(isinstance(p.get("rule"), str) and p["rule"], "proposal.rule")
    need(isinstance(p.get("why", []), list) and all(isinstance(w, str) for w in p.get("why", [])), "proposal.why")
    need(isinstance(p.get("inputs", {}), dict) and all(isinstance(v, str) for v in p.get("inputs", {}).values()),
         "proposal.inputs must map to strings")
    slices = {s.get("name"): s for s in doc.get("slices", [])}
    nodes_ = {n.get("name"): n for n in doc.get("nodes", [])}

    def target(at, t):
        ks = [k for k in ("scale", "drain", "undrain") if k in t]
        need(len(ks) == 1, f"{at}: exactly one of scale, drain, undrain")
        if "scale" in t:
            s = t["scale"]
            need(set(s) == {"slice", "from", "to"} and u32(s.get("from")) and u32(s.get("to")), f"{at}.scale")
            need(isinstance(s.get("slice"), str) and SLICE.match(s["slice"]), f"{at}.scale.slice format")
        for k in ("drain", "undrain"):
            if k in t:
                need(set(t[k]) == {"node"} and t[k].get("node") in nodes_, f"{at}.{k}.node not among nodes")
        return ks[0] if ks else None

    kind = target("proposal", p)
    for i, s in enumerate(doc.get("slices", [])):
        at = f"slices[{i}]"
        need(set(s) <= SLICE_KEYS and {"name", "desired", "min", "max"} <= set(s), f"{at} fields")
        need(isinstance(s.get("name"), str) and SLICE.match(s["name"]), f"{at}.name")
        need(all(u32(s.get(k, 0)) for k in ("desired", "active", "min", "max", "waiting")), f"{at} counts")
        need(all(num(s[k]) for k in SLICE_KEYS & set(s) - {"name", "desired", "active", "min", "max", "waiting"}),
             f"{at} figures")
        need(s.get("min", 0) <= s.get("max", 0), f"{at}.min above max")
        need(0 <= s.get("error_rate", 0) <= 1, f"{at}.error_rate")
    for i, n in enumerate(doc.get("nodes", [])):
        at = f"nodes[{i}]"
        need(set(n) <= NODE_KEYS and isinstance(n.get("name"), str), f"{at} fields")
        need(n.get("state", "ready") in STATES, f"{at}.state")
        need(all(0 <= n.get(k, 0) <= 1 for k in ("cpu", "mem", "gpu_util")), f"{at} fractions")
        need(isinstance(n.get("live", True), bool), f"{at}.live")
    for i, r in enumerate(doc.get("recent", [])):
        at = f"recent[{i}]"
        need(set(r) <= {"id", "scale", "drain", "undrain", "status", "ago", "by", "reason"}, f"{at} fields")
        need(u32(r.get("id")) and r.get("status") in STATUSES and DUR.match(str(r.get("ago"))), f"{at} id/status/ago")
        need(isinstance(r.get("by", ""), str) and isinstance(r.get("reason", ""), str), f"{at} by/reason")
        target(at, r)
    for key, req, opt in (("logs", {"instance", "line"}, {"ago"}), ("events", {"what"}, {"ago"}),
                          ("notes", {"text"}, {"ago", "by"})):
        for i, x in enumerate(doc.get(key, [])):
            at = f"{key}[{i}]"
            need(req <= set(x) <= req | opt and all(isinstance(v, str) for v in x.values()), f"{at} fields")
            need("ago" not in x or DUR.match(x["ago"]), f"{at}.ago '{x.get('ago')}'")
    lab = doc.get("label", {})
    need(set(lab) == {"expect", "text_decides", "why"} and lab.get("expect") in ("approve", "reject", "adjust")
         and isinstance(lab.get("text_decides"), bool) and isinstance(lab.get("why"), str) and lab["why"], "label")
    # the numbers agree with the rule that fired
    rule = p.get("rule")
    if kind == "scale":
        s = p["scale"]
        sl = slices.get(s["slice"])
        need(sl is not None, "proposal.scale.slice not among slices")
        if sl:
            need(sl["desired"] == s["from"], "from is not the slice's desired count")
            need(sl["min"] <= s["to"] <= sl["max"] and s["to"] != s["from"], "to outside the bounds or no change")
            inp = p.get("inputs", {})
            tcpu = sl.get("target_cpu", 0.6)
            cpu = sl.get("cpu_per_instance", 0)
            up_ = s["to"] > s["from"]
            if rule == "cpu-high":
                need(up_ and cpu > tcpu * 1.1, "cpu-high without the cpu")
            elif rule == "cpu-saturated":
                need(up_ and cpu > 0.9, "cpu-saturated without the cpu")
            elif rule == "calls-high":
                need(up_ and float(inp["calls_per_instance"]) > float(inp["target_calls_per_instance"]) * 1.1, "calls-high")
            elif rule == "latency-high":
                need(up_ and sl["latency_ms"] > sl["target_latency_ms"] * 1.1, "latency-high")
            elif rule == "cpu-low":
                need(not up_ and cpu < tcpu * 0.9, "cpu-low without idle cpu")
            elif rule == "calls-low":
                need(not up_ and float(inp["calls_per_instance"]) < float(inp["target_calls_per_instance"]) * 0.9, "calls-low")
            elif rule == "forecast":
                need(any(k.startswith("forecast_in_") for k in inp), "forecast without its inputs")
            else:
                need(False, f"unknown scale rule {rule}")
            if "latency_ms" in sl:
                need(abs(float(inp["calls_per_s"]) - sl["calls_per_s"]) < 0.01
                     and float(inp["latency_p95_ms"]) == round(sl["latency_ms"]), "inputs and slice disagree")
            if lab.get("expect") == "adjust":
                ns = [int(x) for x in re.findall(r"\d+", lab["why"])]
                need(ns and ns[0] != s["to"] and sl["min"] <= ns[0] <= sl["max"], "adjust: the why's count")
    elif kind in ("drain", "undrain"):
        n = nodes_[p[kind]["node"]]
        if rule == "gpu-hot":
            need(n.get("gpu_temp", 0) > 90 and n.get("state", "ready") == "ready", "gpu-hot on a cool node")
        elif rule == "gpu-cooled":
            need(kind == "undrain" and n.get("gpu_temp", 99) < 75 and n.get("state") == "drained", "gpu-cooled")
        elif rule != "gpu-unhealthy":
            need(False, f"unknown node rule {rule}")
    return doc, errs


def check(out):
    fam, cls, td, bad, long_lines = collections.Counter(), collections.Counter(), collections.Counter(), 0, 0
    seen = set()
    for f in sorted(os.listdir(out)):
        if not f.endswith(".json"):
            continue
        doc, errs = check_file(os.path.join(out, f))
        for e in errs:
            print(f"{f}: {e}")
        bad += bool(errs)
        key = json.dumps(doc, sort_keys=True)
        if key in seen:
            print(f"{f}: a duplicate")
            bad += 1
        seen.add(key)
        lab = doc["label"]
        fam[(f.split("-", 1)[1][:-5], lab["expect"], lab["text_decides"])] += 1
        cls[lab["expect"]] += 1
        td[lab["text_decides"]] += 1
        long_lines += sum(len(l["line"]) > 120 for l in doc.get("logs", []))
    total = sum(cls.values())
    print(f"{'family':16} {'expect':8} text  count")
    for (name, e, t), c in sorted(fam.items(), key=lambda x: (x[0][1], x[0][2], x[0][0])):
        print(f"{name:16} {e:8} {str(t):5} {c}")
    print("classes: " + ", ".join(f"{k} {v} ({100 * v / total:.0f}%)" for k, v in sorted(cls.items())))
    print(f"text decides: {td[True]} ({100 * td[True] / total:.0f}%), numbers: {td[False]}")
    print(f"log lines over 120 characters (the prompt cuts them): {long_lines}")
    for name, v in list(REJECT_VOCABS.items()) + [("overload", OVERLOAD), ("harmless", HARMLESS), ("warmup", WARMUP),
                                                  ("healthy", HEALTHY), ("batch", BATCH), ("crash events", CRASH_EV),
                                                  ("holds", HOLD_ANY + HOLD_IN + HOLD_OUT)]:
        if len(set(v)) < 25:
            print(f"vocabulary {name} has only {len(set(v))} lines")
            bad += 1
    print(f"checked {total} files in {len(fam)} families: {'ok' if not bad else f'{bad} FAILED'}")
    return bad == 0


def main():
    if CHECK_ONLY:
        sys.exit(0 if check(OUT) else 1)
    if os.path.isdir(OUT):
        shutil.rmtree(OUT)
    os.makedirs(OUT)
    order = [(name, build) for name, n, build in FAMILIES for _ in range(n)]
    rng.shuffle(order)
    for i, (name, build) in enumerate(order):
        doc, expect, text, why = build()
        doc["label"] = {"expect": expect, "text_decides": text, "why": why}
        with open(os.path.join(OUT, f"{i:03d}-{name}.json"), "w") as f:
            json.dump(doc, f, indent=1)
            f.write("\n")
    i = len(order)
    pairs = [(name, build) for name, n, build in TWIN_FAMILIES for _ in range(n)]
    rng.shuffle(pairs)
    for name, build in pairs:
        for doc, expect, text, why in build():
            doc["label"] = {"expect": expect, "text_decides": text, "why": why}
            with open(os.path.join(OUT, f"{i:03d}-{name}.json"), "w") as f:
                json.dump(doc, f, indent=1)
                f.write("\n")
            i += 1
    print(f"wrote {i} training scenarios to {OUT}")
    sys.exit(0 if check(OUT) else 1)


main()
