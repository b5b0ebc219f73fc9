//! Offerflow's own PostgreSQL cluster, run from the installed server binaries
//! when no `DATABASE_URL` is configured.
//!
//! Layout of the data directory handed to [`EmbeddedPostgres::start`]:
//!
//! ```text
//! <data_dir>/
//!   pgdata/          the cluster (PGDATA), created by initdb on first use
//!   run/             the unix socket directory
//!   port             the TCP port used last time (remembered across runs)
//!   postgres.log     the server log
//! ```
//!
//! When the process runs as root, `initdb`, `pg_ctl` and the server run as the
//! unprivileged `postgres` user (through `runuser`), and the directories above
//! are owned by that user; the database superuser is then `postgres`.
//! Otherwise everything runs as the current user, who is also the database
//! superuser. Authentication is `trust`, and the server listens on 127.0.0.1
//! and on the socket in `run/` only.
//!
//! Binaries are looked up in `$OFFERFLOW_PG_BIN` (a directory), then in the
//! highest version under `/usr/lib/postgresql/*/bin` (preferring the version
//! that initialised an existing cluster), then in `pg_config --bindir`, then
//! on `PATH`.

use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::{ConnectOptions, Connection};
use tokio::process::Command;

/// Environment variable naming a directory that holds `initdb`, `pg_ctl` and `postgres`.
pub const PG_BIN_ENV: &str = "OFFERFLOW_PG_BIN";

const PGDATA_DIR: &str = "pgdata";
const RUN_DIR: &str = "run";
const PORT_FILE: &str = "port";
const LOG_FILE: &str = "postgres.log";
/// Settings rewritten on every start; included from postgresql.conf.
const MANAGED_CONF: &str = "offerflow.conf";
const INCLUDE_LINE: &str = "include_if_exists = 'offerflow.conf'";
/// Longest unix socket path (sun_path is 108 bytes including the NUL) we try to use.
const MAX_SOCKET_PATH: usize = 100;
const PG_CTL_TIMEOUT_SECS: &str = "120";
const CONNECT_TIMEOUT: Duration = Duration::from_secs(60);
const START_ATTEMPTS: usize = 5;
const LOG_ROTATE_BYTES: u64 = 16 * 1024 * 1024;

/// A PostgreSQL cluster run by Offerflow itself.
pub struct EmbeddedPostgres {
    bin_dir: PathBuf,
    root: PathBuf,
    pgdata: PathBuf,
    run_as: Option<String>,
    url: String,
    port: u16,
    /// Whether this value started the server and must stop it.
    owns_server: bool,
}

/// Who runs the PostgreSQL programs and which database role we connect as.
struct Identity {
    /// `Some(user)` when we are root and must drop privileges via `runuser -u user`.
    run_as: Option<OsUser>,
    db_user: String,
}

struct OsUser {
    name: String,
    uid: u32,
    gid: u32,
}

impl EmbeddedPostgres {
    /// Starts (initialising on first use) a cluster whose data lives in `data_dir` (kept across runs).
    ///
    /// Listens only on 127.0.0.1 on `port` (or, if `None`, the port remembered in the data dir from
    /// the last run, else a free port chosen now and remembered), with its unix socket in
    /// `<data_dir>/run`. A remembered (not explicitly requested) port that is busy is replaced by a
    /// free one, which is remembered instead. Creates the database `database` if missing.
    /// Returns once the server accepts connections.
    ///
    /// If a server from an earlier process is still running on this data dir, it is reused as is
    /// (on whatever port it listens on) and left running by [`stop`](Self::stop) and `Drop`.
    pub async fn start(data_dir: &Path, port: Option<u16>, database: &str) -> Result<Self> {
        let identity = Identity::detect().await?;
        let root = std::path::absolute(data_dir)
            .with_context(|| format!("cannot resolve the data directory {}", data_dir.display()))?;
        let pgdata = root.join(PGDATA_DIR);
        let run_dir = root.join(RUN_DIR);

        prepare_dirs(&root, &run_dir, &identity).await?;

        let initialised = pgdata.join("PG_VERSION").is_file();
        let cluster_version = if initialised {
            std::fs::read_to_string(pgdata.join("PG_VERSION"))
                .ok()
                .map(|v| v.trim().to_owned())
        } else {
            None
        };
        let bin_dir = find_bin_dir(cluster_version.as_deref())?;
        tracing::debug!(bin_dir = %bin_dir.display(), data_dir = %root.display(), "embedded PostgreSQL");

        let mut pg = EmbeddedPostgres {
            bin_dir,
            root,
            pgdata,
            run_as: identity.run_as.as_ref().map(|u| u.name.clone()),
            url: String::new(),
            port: 0,
            owns_server: false,
        };

        if !initialised {
            pg.initdb(&identity).await?;
        }
        pg.ensure_include_line(&identity)?;

        if let Some(running_port) = pg.running_port().await? {
            tracing::info!(
                port = running_port,
                data_dir = %pg.root.display(),
                "PostgreSQL is already running on this data directory (started by another process); reusing it"
            );
            if port.is_some_and(|p| p != running_port) {
                tracing::warn!(
                    requested = port,
                    actual = running_port,
                    "the running PostgreSQL listens on a different port than requested"
                );
            }
            pg.port = running_port;
        } else {
            pg.start_server(port, &run_dir, &identity).await?;
            pg.owns_server = true;
        }

        pg.url = format!(
            "postgres://{}@127.0.0.1:{}/{}",
            percent_encode(&identity.db_user),
            pg.port,
            percent_encode(database)
        );
        pg.create_database(&identity.db_user, database).await?;
        tracing::info!(port = pg.port, database, "embedded PostgreSQL is ready");
        Ok(pg)
    }

    /// `postgres://…` URL for sqlx (user `postgres` when run via runuser as root, else the
    /// current OS user), host 127.0.0.1.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The TCP port the server listens on (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Stops the cluster (`pg_ctl stop -m fast`) and waits until it is down.
    pub async fn stop(mut self) -> Result<()> {
        if !self.owns_server {
            return Ok(());
        }
        let mut cmd = self.pg_command("pg_ctl");
        cmd.arg("stop").arg("-D").arg(&self.pgdata).args([
            "-m",
            "fast",
            "-w",
            "-s",
            "-t",
            PG_CTL_TIMEOUT_SECS,
        ]);
        let out = run_output(&mut cmd, "pg_ctl stop").await?;
        // Whatever happened, Drop must not try again.
        self.owns_server = false;
        if !out.status.success() {
            bail!(
                "pg_ctl stop failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(())
    }

    fn pg_command(&self, program: &str) -> Command {
        Command::from(std_pg_command(
            &self.bin_dir,
            program,
            self.run_as.as_deref(),
            &self.root,
        ))
    }

    async fn initdb(&self, identity: &Identity) -> Result<()> {
        tracing::info!(data_dir = %self.pgdata.display(), "initialising a new PostgreSQL cluster");
        let mut last_err = None;
        for locale in ["C.UTF-8", "C"] {
            let mut cmd = self.pg_command("initdb");
            cmd.arg("-D")
                .arg(&self.pgdata)
                .arg("--username")
                .arg(&identity.db_user)
                .args(["--auth=trust", "-E", "UTF8"])
                .arg(format!("--locale={locale}"));
            let out = run_output(&mut cmd, "initdb").await?;
            if out.status.success() {
                return Ok(());
            }
            let stderr = String::from_utf8_lossy(&out.stderr).trim().to_owned();
            tracing::debug!(locale, %stderr, "initdb failed");
            last_err = Some(anyhow!(
                "initdb --locale={locale} failed ({}): {stderr}",
                out.status
            ));
            // initdb removes what it created on failure; make sure the next try starts clean.
            if self.pgdata.exists() {
                let _ = std::fs::remove_dir_all(&self.pgdata);
            }
        }
        Err(last_err.unwrap_or_else(|| anyhow!("initdb was not run"))).with_context(|| {
            format!(
                "could not initialise a PostgreSQL cluster in {}",
                self.pgdata.display()
            )
        })
    }

    /// Makes postgresql.conf include our managed settings file.
    fn ensure_include_line(&self, identity: &Identity) -> Result<()> {
        let conf = self.pgdata.join("postgresql.conf");
        let text = std::fs::read_to_string(&conf)
            .with_context(|| format!("cannot read {}", conf.display()))?;
        if !text.lines().any(|l| l.trim() == INCLUDE_LINE) {
            let mut text = text;
            if !text.ends_with('\n') {
                text.push('\n');
            }
            text.push_str("\n# Offerflow: port, listen address and socket directory.\n");
            text.push_str(INCLUDE_LINE);
            text.push('\n');
            std::fs::write(&conf, text)
                .with_context(|| format!("cannot write {}", conf.display()))?;
        }
        // Make sure a managed file exists even before the first start (harmless if it does).
        let managed = self.pgdata.join(MANAGED_CONF);
        if !managed.exists() {
            write_owned(&managed, "", identity)?;
        }
        Ok(())
    }

    /// The port of a server already running on this data directory, if any. Removes a
    /// `postmaster.pid` left by a crash whose process id now belongs to another program (which
    /// would make the server refuse to start).
    async fn running_port(&self) -> Result<Option<u16>> {
        let pid_file = self.pgdata.join("postmaster.pid");
        let Ok(text) = std::fs::read_to_string(&pid_file) else {
            return Ok(None);
        };
        let pid = text
            .lines()
            .next()
            .and_then(|l| l.trim().parse::<u32>().ok());
        let alive = match pid.and_then(|pid| server_alive(pid, &self.pgdata)) {
            Some(alive) => alive,
            None => {
                let mut cmd = self.pg_command("pg_ctl");
                cmd.arg("status").arg("-D").arg(&self.pgdata);
                // 0: running; 3: not running (pg_ctl start copes with a stale postmaster.pid).
                run_output(&mut cmd, "pg_ctl status").await?.status.code() == Some(0)
            }
        };
        if !alive {
            if pid.is_some_and(|pid| Path::new(&format!("/proc/{pid}")).exists()) {
                tracing::info!(file = %pid_file.display(), "removing a stale postmaster.pid");
                let _ = std::fs::remove_file(&pid_file);
            }
            return Ok(None);
        }
        let port = text
            .lines()
            .nth(3)
            .and_then(|l| l.trim().parse::<u16>().ok())
            .filter(|p| *p != 0)
            .ok_or_else(|| {
                anyhow!(
                    "cannot read the port of the running server from {}",
                    pid_file.display()
                )
            })?;
        Ok(Some(port))
    }

    async fn start_server(
        &mut self,
        requested: Option<u16>,
        run_dir: &Path,
        identity: &Identity,
    ) -> Result<()> {
        let port_file = self.root.join(PORT_FILE);
        let remembered = std::fs::read_to_string(&port_file)
            .ok()
            .and_then(|s| s.trim().parse::<u16>().ok())
            .filter(|p| *p != 0);

        let mut port = match (requested, remembered) {
            (Some(p), _) => p,
            (None, Some(p)) if port_is_free(p) => p,
            (None, Some(p)) => {
                let new = free_port()?;
                tracing::info!(
                    old = p,
                    new,
                    "remembered PostgreSQL port is busy; using another one"
                );
                new
            }
            (None, None) => free_port()?,
        };
        if requested.is_some() && !port_is_free(port) {
            bail!("port {port} on 127.0.0.1 is already in use; cannot start the embedded PostgreSQL there");
        }

        let log = self.root.join(LOG_FILE);
        rotate_log(&log);
        let socket_dir = if run_dir
            .join(format!(".s.PGSQL.{}", u16::MAX))
            .as_os_str()
            .len()
            <= MAX_SOCKET_PATH
        {
            Some(run_dir)
        } else {
            tracing::warn!(
                dir = %run_dir.display(),
                "the socket directory path is too long for a unix socket; listening on TCP only"
            );
            None
        };

        let mut attempt = 0;
        loop {
            attempt += 1;
            self.write_managed_conf(port, socket_dir, identity)?;
            let log_len_before = std::fs::metadata(&log).map(|m| m.len()).unwrap_or(0);
            let mut cmd = self.pg_command("pg_ctl");
            cmd.arg("start")
                .arg("-D")
                .arg(&self.pgdata)
                .arg("-l")
                .arg(&log)
                .args(["-w", "-s", "-t", PG_CTL_TIMEOUT_SECS]);
            let out = run_output(&mut cmd, "pg_ctl start").await?;
            if out.status.success() {
                break;
            }
            let log_tail = read_log_since(&log, log_len_before);
            let port_clash = log_tail.contains("could not bind")
                || log_tail.contains("Address already in use")
                || !port_is_free(port);
            if port_clash && requested.is_none() && attempt < START_ATTEMPTS {
                let new = free_port()?;
                tracing::info!(
                    old = port,
                    new,
                    "PostgreSQL could not listen on its port; trying another one"
                );
                port = new;
                continue;
            }
            bail!(
                "could not start PostgreSQL (data dir {}, port {port}): pg_ctl: {} ({})\n--- {} (new lines) ---\n{}",
                self.pgdata.display(),
                String::from_utf8_lossy(&out.stderr).trim(),
                out.status,
                log.display(),
                log_tail.trim_end()
            );
        }
        self.port = port;
        if remembered != Some(port) {
            write_owned(&port_file, &format!("{port}\n"), identity)
                .context("cannot remember the PostgreSQL port")?;
        }
        Ok(())
    }

    fn write_managed_conf(
        &self,
        port: u16,
        socket_dir: Option<&Path>,
        identity: &Identity,
    ) -> Result<()> {
        let sockets = match socket_dir {
            Some(dir) => conf_quote(&dir.to_string_lossy()),
            None => "''".to_owned(),
        };
        let text = format!(
            "# Managed by Offerflow (http/src/embedded_pg.rs); rewritten on every start.\n\
             listen_addresses = '127.0.0.1'\n\
             port = {port}\n\
             unix_socket_directories = {sockets}\n"
        );
        write_owned(&self.pgdata.join(MANAGED_CONF), &text, identity)
    }

    async fn create_database(&self, db_user: &str, database: &str) -> Result<()> {
        let options = PgConnectOptions::new()
            .host("127.0.0.1")
            .port(self.port)
            .username(db_user)
            .database("postgres")
            .disable_statement_logging();
        let deadline = Instant::now() + CONNECT_TIMEOUT;
        let mut conn = loop {
            match PgConnection::connect_with(&options).await {
                Ok(conn) => break conn,
                Err(err) if Instant::now() < deadline => {
                    tracing::debug!(%err, "waiting for PostgreSQL to accept connections");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(err) => {
                    return Err(err).with_context(|| {
                        format!(
                            "PostgreSQL on 127.0.0.1:{} does not accept connections",
                            self.port
                        )
                    })
                }
            }
        };
        let exists: bool =
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
                .bind(database)
                .fetch_one(&mut conn)
                .await
                .context("cannot list the databases")?;
        if !exists {
            let sql = format!("CREATE DATABASE \"{}\"", database.replace('"', "\"\""));
            match sqlx::query(&sql).execute(&mut conn).await {
                Ok(_) => tracing::info!(database, "created database"),
                // 42P04 duplicate_database: created concurrently by someone else.
                Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("42P04") => {}
                Err(e) => {
                    return Err(e).with_context(|| format!("cannot create database {database:?}"))
                }
            }
        }
        let _ = conn.close().await;
        Ok(())
    }
}

impl Drop for EmbeddedPostgres {
    fn drop(&mut self) {
        if !self.owns_server {
            return;
        }
        self.owns_server = false;
        let mut cmd = std_pg_command(&self.bin_dir, "pg_ctl", self.run_as.as_deref(), &self.root);
        cmd.arg("stop")
            .arg("-D")
            .arg(&self.pgdata)
            .args(["-m", "fast", "-w", "-s", "-t", "60"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        match cmd.output() {
            Ok(out) if out.status.success() => {}
            Ok(out) => tracing::warn!(
                status = %out.status,
                stderr = %String::from_utf8_lossy(&out.stderr).trim(),
                "could not stop the embedded PostgreSQL"
            ),
            Err(err) => {
                tracing::warn!(%err, "could not run pg_ctl to stop the embedded PostgreSQL")
            }
        }
    }
}

impl Identity {
    async fn detect() -> Result<Self> {
        let euid = effective_uid().await?;
        if euid == 0 {
            let uid = id_number(&["-u", "postgres"]).await;
            let gid = id_number(&["-g", "postgres"]).await;
            let (uid, gid) = match (uid, gid) {
                (Ok(u), Ok(g)) => (u, g),
                _ => bail!(
                    "running as root, the embedded PostgreSQL must run as the unprivileged `postgres` user, \
                     which does not exist: install the server (`apt-get install postgresql`) or set DATABASE_URL"
                ),
            };
            Ok(Identity {
                run_as: Some(OsUser {
                    name: "postgres".to_owned(),
                    uid,
                    gid,
                }),
                db_user: "postgres".to_owned(),
            })
        } else {
            let out = Command::new("id")
                .arg("-un")
                .stdin(Stdio::null())
                .output()
                .await
                .context("cannot run `id -un` to find the current user name")?;
            let name = String::from_utf8_lossy(&out.stdout).trim().to_owned();
            let name = if out.status.success() && !name.is_empty() {
                name
            } else {
                std::env::var("USER")
                    .ok()
                    .filter(|u| !u.is_empty())
                    .ok_or_else(|| anyhow!("cannot determine the current user name (uid {euid})"))?
            };
            Ok(Identity {
                run_as: None,
                db_user: name,
            })
        }
    }
}

/// Whether process `pid` is a server on `pgdata` (its working directory is the data directory);
/// `None` when this cannot be told (no /proc).
fn server_alive(pid: u32, pgdata: &Path) -> Option<bool> {
    if !Path::new("/proc/self").exists() {
        return None;
    }
    let proc_dir = PathBuf::from(format!("/proc/{pid}"));
    if !proc_dir.exists() {
        return Some(false);
    }
    if let Ok(cwd) = std::fs::read_link(proc_dir.join("cwd")) {
        let want = std::fs::canonicalize(pgdata).unwrap_or_else(|_| pgdata.to_path_buf());
        return Some(cwd == want);
    }
    match std::fs::read_to_string(proc_dir.join("comm")) {
        Ok(comm) => Some(matches!(comm.trim(), "postgres" | "postmaster")),
        Err(_) => Some(false),
    }
}

async fn effective_uid() -> Result<u32> {
    if let Ok(status) = std::fs::read_to_string("/proc/self/status") {
        if let Some(euid) = status
            .lines()
            .find_map(|l| l.strip_prefix("Uid:"))
            .and_then(|rest| rest.split_whitespace().nth(1))
            .and_then(|e| e.parse().ok())
        {
            return Ok(euid);
        }
    }
    id_number(&["-u"])
        .await
        .context("cannot determine the effective user id")
}

async fn id_number(args: &[&str]) -> Result<u32> {
    let out = Command::new("id")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .await
        .with_context(|| format!("cannot run `id {}`", args.join(" ")))?;
    if !out.status.success() {
        bail!(
            "`id {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .with_context(|| format!("unexpected output from `id {}`", args.join(" ")))
}

/// Creates the data and run directories; as root, hands them to the `postgres` user and checks
/// that it can reach them.
async fn prepare_dirs(root: &Path, run_dir: &Path, identity: &Identity) -> Result<()> {
    std::fs::create_dir_all(root).with_context(|| format!("cannot create {}", root.display()))?;
    std::fs::create_dir_all(run_dir)
        .with_context(|| format!("cannot create {}", run_dir.display()))?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(root, std::fs::Permissions::from_mode(0o700))
        .with_context(|| format!("cannot set the permissions of {}", root.display()))?;
    std::fs::set_permissions(run_dir, std::fs::Permissions::from_mode(0o700))
        .with_context(|| format!("cannot set the permissions of {}", run_dir.display()))?;
    if let Some(user) = &identity.run_as {
        for dir in [root, run_dir] {
            std::os::unix::fs::chown(dir, Some(user.uid), Some(user.gid)).with_context(|| {
                format!("cannot give {} to the `{}` user", dir.display(), user.name)
            })?;
        }
        for f in [PORT_FILE, LOG_FILE] {
            let path = root.join(f);
            if path.exists() {
                let _ = std::os::unix::fs::chown(&path, Some(user.uid), Some(user.gid));
            }
        }
        let status = Command::new("runuser")
            .args(["-u", &user.name, "--", "test", "-w"])
            .arg(root)
            .arg("-a")
            .arg("-x")
            .arg(root)
            .current_dir("/")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .await
            .context("cannot run `runuser` (from util-linux) to check the data directory")?;
        if !status.success() {
            bail!(
                "the `{}` user cannot reach {}: some parent directory is not searchable by it \
                 (e.g. /root is mode 0700); choose a data directory outside it, or set DATABASE_URL",
                user.name,
                root.display()
            );
        }
    }
    Ok(())
}

fn std_pg_command(
    bin_dir: &Path,
    program: &str,
    run_as: Option<&str>,
    cwd: &Path,
) -> std::process::Command {
    let exe = bin_dir.join(program);
    let mut cmd = match run_as {
        Some(user) => {
            let mut c = std::process::Command::new("runuser");
            c.args(["-u", user, "--"]).arg(exe);
            c
        }
        None => std::process::Command::new(exe),
    };
    // The server reads these if the configuration does not say otherwise; keep them out.
    for var in [
        "PGDATA",
        "PGPORT",
        "PGHOST",
        "PGOPTIONS",
        "PGUSER",
        "PGDATABASE",
    ] {
        cmd.env_remove(var);
    }
    // A directory the postgres user can enter (our cwd may be /root).
    cmd.current_dir(cwd).stdin(Stdio::null());
    cmd
}

async fn run_output(cmd: &mut Command, what: &str) -> Result<Output> {
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let out = cmd
        .output()
        .await
        .with_context(|| format!("cannot run {what}"))?;
    if !out.status.success() {
        tracing::debug!(what, status = %out.status, "command failed");
    }
    Ok(out)
}

/// Writes `path` and, as root, hands it to the `postgres` user.
fn write_owned(path: &Path, contents: &str, identity: &Identity) -> Result<()> {
    std::fs::write(path, contents).with_context(|| format!("cannot write {}", path.display()))?;
    if let Some(user) = &identity.run_as {
        std::os::unix::fs::chown(path, Some(user.uid), Some(user.gid)).with_context(|| {
            format!("cannot give {} to the `{}` user", path.display(), user.name)
        })?;
    }
    Ok(())
}

fn rotate_log(log: &Path) {
    if std::fs::metadata(log).is_ok_and(|m| m.len() > LOG_ROTATE_BYTES) {
        let _ = std::fs::rename(log, log.with_extension("log.old"));
    }
}

fn read_log_since(log: &Path, offset: u64) -> String {
    let bytes = std::fs::read(log).unwrap_or_default();
    let start = (offset as usize).min(bytes.len());
    let text = String::from_utf8_lossy(&bytes[start..]).into_owned();
    // Keep the error short: the last 40 lines at most.
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

fn port_is_free(port: u16) -> bool {
    // std sets SO_REUSEADDR like the server does, so TIME_WAIT leftovers do not count as busy.
    std::net::TcpListener::bind(("127.0.0.1", port)).is_ok()
}

fn free_port() -> Result<u16> {
    let listener = std::net::TcpListener::bind(("127.0.0.1", 0))
        .context("cannot find a free TCP port on 127.0.0.1")?;
    Ok(listener
        .local_addr()
        .context("cannot read the chosen TCP port")?
        .port())
}

/// Quotes a value for postgresql.conf.
fn conf_quote(value: &str) -> String {
    format!("'{}'", value.replace('\\', "\\\\").replace('\'', "''"))
}

fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Finds the directory holding `initdb`, `pg_ctl` and `postgres`.
///
/// `cluster_version` is the major version of an existing cluster (its `PG_VERSION`); binaries of
/// that version are preferred over newer ones, which could not open it.
pub fn find_bin_dir(cluster_version: Option<&str>) -> Result<PathBuf> {
    fn has_server(dir: &Path) -> bool {
        ["initdb", "pg_ctl", "postgres"]
            .iter()
            .all(|p| dir.join(p).is_file())
    }

    if let Some(dir) = std::env::var_os(PG_BIN_ENV).filter(|d| !d.is_empty()) {
        let dir = PathBuf::from(dir);
        if has_server(&dir) {
            return Ok(dir);
        }
        bail!(
            "{PG_BIN_ENV}={} does not contain the PostgreSQL server programs (initdb, pg_ctl, postgres)",
            dir.display()
        );
    }

    let mut debian: Vec<(Vec<u64>, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let name = entry.file_name().to_string_lossy().into_owned();
            let version: Option<Vec<u64>> = name.split('.').map(|p| p.parse().ok()).collect();
            let bin = entry.path().join("bin");
            match version {
                Some(v) if has_server(&bin) => Some((v, bin)),
                _ => None,
            }
        })
        .collect();
    debian.sort();
    if let Some(wanted) = cluster_version {
        if let Some((_, bin)) = debian.iter().find(|(v, _)| {
            v.iter()
                .map(|n| n.to_string())
                .collect::<Vec<_>>()
                .join(".")
                == wanted
        }) {
            return Ok(bin.clone());
        }
    }
    if let Some((_, bin)) = debian.pop() {
        return Ok(bin);
    }

    if let Ok(out) = std::process::Command::new("pg_config")
        .arg("--bindir")
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
    {
        let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if out.status.success() && has_server(&dir) {
            return Ok(dir);
        }
    }

    if let Some(path) = std::env::var_os("PATH") {
        if let Some(dir) = std::env::split_paths(&path).find(|d| has_server(d)) {
            return Ok(dir);
        }
    }

    bail!(
        "no PostgreSQL server binaries (initdb, pg_ctl, postgres) found in ${PG_BIN_ENV}, \
         /usr/lib/postgresql/*/bin, `pg_config --bindir` or PATH. Install them \
         (`apt-get install postgresql`), point {PG_BIN_ENV} at their directory, \
         or set DATABASE_URL to use an existing database"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fresh directory under /tmp, removed on drop.
    struct TempDir(PathBuf);
    impl TempDir {
        fn new(tag: &str) -> Self {
            let dir = PathBuf::from(format!(
                "/tmp/offerflow-embedded-pg-{tag}-{}-{:016x}",
                std::process::id(),
                rand::random::<u64>()
            ));
            std::fs::create_dir_all(&dir).unwrap();
            TempDir(dir.join("db"))
        }
    }
    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(self.0.parent().unwrap());
        }
    }

    fn binaries_missing() -> bool {
        match find_bin_dir(None) {
            Ok(_) => false,
            Err(err) => {
                eprintln!("skipping embedded PostgreSQL test: {err:#}");
                true
            }
        }
    }

    async fn connect(url: &str) -> PgConnection {
        PgConnection::connect(url)
            .await
            .unwrap_or_else(|e| panic!("connect {url}: {e}"))
    }

    #[tokio::test]
    async fn keeps_data_across_restarts() {
        if binaries_missing() {
            return;
        }
        let dir = TempDir::new("restart");

        let pg = EmbeddedPostgres::start(&dir.0, None, "offerflow_test")
            .await
            .unwrap();
        let url = pg.url().to_owned();
        assert!(url.starts_with("postgres://"), "{url}");
        assert!(url.contains("@127.0.0.1:"), "{url}");
        assert!(url.ends_with("/offerflow_test"), "{url}");
        let mut conn = connect(&url).await;
        sqlx::query("CREATE TABLE kept (id int PRIMARY KEY, name text NOT NULL)")
            .execute(&mut conn)
            .await
            .unwrap();
        sqlx::query("INSERT INTO kept VALUES (1, 'offer')")
            .execute(&mut conn)
            .await
            .unwrap();
        conn.close().await.unwrap();
        pg.stop().await.unwrap();
        assert!(
            !dir.0.join(PGDATA_DIR).join("postmaster.pid").exists(),
            "server still running"
        );

        // Same directory: the port is remembered and the data kept.
        let pg = EmbeddedPostgres::start(&dir.0, None, "offerflow_test")
            .await
            .unwrap();
        assert_eq!(pg.url(), url, "port not remembered");
        let mut conn = connect(pg.url()).await;
        let name: String = sqlx::query_scalar("SELECT name FROM kept WHERE id = 1")
            .fetch_one(&mut conn)
            .await
            .unwrap();
        assert_eq!(name, "offer");
        conn.close().await.unwrap();
        pg.stop().await.unwrap();
        assert!(
            !dir.0.join(PGDATA_DIR).join("postmaster.pid").exists(),
            "server still running"
        );
    }

    #[tokio::test]
    async fn busy_port_is_replaced_and_drop_stops_the_server() {
        if binaries_missing() {
            return;
        }
        let dir = TempDir::new("busy");

        let pg = EmbeddedPostgres::start(&dir.0, None, "postgres")
            .await
            .unwrap();
        let first_port = pg.port();
        pg.stop().await.unwrap();

        // Someone else takes the remembered port meanwhile.
        let squatter = std::net::TcpListener::bind(("127.0.0.1", first_port)).unwrap();
        let pg = EmbeddedPostgres::start(&dir.0, None, "other_db")
            .await
            .unwrap();
        assert_ne!(pg.port(), first_port);
        let remembered: u16 = std::fs::read_to_string(dir.0.join(PORT_FILE))
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        assert_eq!(remembered, pg.port());
        let mut conn = connect(pg.url()).await;
        let db: String = sqlx::query_scalar("SELECT current_database()")
            .fetch_one(&mut conn)
            .await
            .unwrap();
        assert_eq!(db, "other_db");
        conn.close().await.unwrap();
        drop(squatter);

        // A second start while it runs reuses the server and leaves it running.
        let again = EmbeddedPostgres::start(&dir.0, None, "other_db")
            .await
            .unwrap();
        assert_eq!(again.url(), pg.url());
        again.stop().await.unwrap();
        assert!(dir.0.join(PGDATA_DIR).join("postmaster.pid").exists());

        // Dropping the owner stops the server.
        drop(pg);
        assert!(
            !dir.0.join(PGDATA_DIR).join("postmaster.pid").exists(),
            "Drop did not stop the server"
        );
    }

    #[test]
    fn encodes_url_parts() {
        assert_eq!(percent_encode("postgres"), "postgres");
        assert_eq!(percent_encode("a b@c"), "a%20b%40c");
        assert_eq!(conf_quote("/tmp/it's"), "'/tmp/it''s'");
    }
}
