//! `offerflow`: the server and its administration commands.
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use offerflow_http::argilla::ArgillaArgs;
use offerflow_http::llm::LlmArgs;
use offerflow_http::routes::users::{register_user, NewUser};
use offerflow_http::seed::{seed_catalog, system_admin};
use offerflow_http::server::{
    bootstrap, build_state, cli_metadata, run_worker, serve, Database, StateOptions,
};
use offerflow_http::state::{AppConfig, AppState};
use projections::engine::EngineConfig;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "offerflow",
    version,
    about = "Personalised marketing offers for bank clients, from a local LLM"
)]
struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: Command,
}

#[derive(Args)]
struct Global {
    /// PostgreSQL to use. Without it Offerflow runs its own cluster in --data-dir.
    #[arg(long, env = "DATABASE_URL", global = true, hide_env_values = true)]
    database_url: Option<String>,
    /// Where the embedded PostgreSQL keeps its data (when DATABASE_URL is not set).
    #[arg(long, env = "OFFERFLOW_DATA_DIR", global = true)]
    data_dir: Option<PathBuf>,
    /// Port of the embedded PostgreSQL (default: the one it used last time, else a free one).
    #[arg(long, env = "OFFERFLOW_PG_PORT", global = true)]
    pg_port: Option<u16>,
    /// Database connections per process.
    #[arg(
        long,
        env = "OFFERFLOW_DB_MAX_CONNECTIONS",
        default_value_t = 20,
        global = true
    )]
    db_max_connections: u32,
    #[command(flatten)]
    argilla: ArgillaArgs,
    /// Log filter, e.g. `info` or `offerflow=debug,sqlx=warn`.
    #[arg(
        long,
        env = "OFFERFLOW_LOG",
        default_value = "info,sqlx=warn,llama-cpp-2=warn",
        global = true
    )]
    log: String,
}

#[derive(Subcommand)]
enum Command {
    /// Runs the HTTP API, the read-model subscribers and the reactors in one process.
    Serve(ServeArgs),
    /// Runs only a generation worker; any number may share one database.
    Worker {
        #[command(flatten)]
        llm: LlmArgs,
    },
    /// Applies pending database migrations.
    Migrate,
    /// Read-model subscribers: their lag, and rebuilding them from the log.
    Projections {
        #[command(subcommand)]
        command: ProjectionsCommand,
    },
    /// Loads shipped data.
    Seed {
        #[command(subcommand)]
        command: SeedCommand,
    },
    /// Imports clients from a spreadsheet or CSV file into a project channel.
    Import(ImportArgs),
    /// Administration.
    Admin {
        #[command(subcommand)]
        command: AdminCommand,
    },
}

#[derive(Args)]
struct ServeArgs {
    #[arg(long, env = "OFFERFLOW_BIND", default_value = "127.0.0.1:8080")]
    bind: SocketAddr,
    /// Largest request body accepted, in bytes.
    #[arg(long, env = "OFFERFLOW_MAX_BODY_BYTES", default_value_t = 2 * 1024 * 1024)]
    max_body_bytes: usize,
    /// How long a query given a consistency token waits for the read models, in ms.
    #[arg(long, env = "OFFERFLOW_CONSISTENCY_WAIT_MS", default_value_t = 5000)]
    consistency_wait_ms: u64,
    /// Lifetime of access tokens, in seconds.
    #[arg(long, env = "OFFERFLOW_ACCESS_TOKEN_TTL", default_value_t = 900)]
    access_token_ttl: i64,
    /// Lifetime of refresh tokens, in seconds.
    #[arg(long, env = "OFFERFLOW_REFRESH_TOKEN_TTL", default_value_t = 30 * 24 * 3600)]
    refresh_token_ttl: i64,
    /// Key signing access tokens (32+ chars). Default: one generated and kept in the database.
    #[arg(long, env = "OFFERFLOW_JWT_SECRET", hide_env_values = true)]
    jwt_secret: Option<String>,
    /// /ready fails when a read model lags more than this many seconds.
    #[arg(long, env = "OFFERFLOW_READY_MAX_LAG_SECONDS", default_value_t = 10.0)]
    ready_max_lag_seconds: f64,
    /// On a database without users, seed the catalog and create an admin (password printed once).
    #[arg(long, env = "OFFERFLOW_BOOTSTRAP", default_value_t = true, action = clap::ArgAction::Set)]
    bootstrap: bool,
    /// Run a generation worker in this process (turn off when workers run elsewhere).
    #[arg(long, env = "OFFERFLOW_WORKER", default_value_t = true, action = clap::ArgAction::Set)]
    worker: bool,
    #[command(flatten)]
    import: ImportLimitArgs,
    #[command(flatten)]
    llm: LlmArgs,
}

#[derive(Args)]
struct ImportArgs {
    /// The file: .xlsx (and .xls, .xlsb, .ods; every sheet, first row = column names) or .csv.
    file: PathBuf,
    /// The project's id.
    #[arg(long)]
    project: uuid::Uuid,
    /// The id of a sales channel attached to the project.
    #[arg(long)]
    channel: uuid::Uuid,
    /// A JSON object column → description, adding to or overriding the bank's dictionary.
    #[arg(long)]
    decoding: Option<PathBuf>,
    /// Queue an offer for every created request.
    #[arg(long)]
    generate: bool,
    #[command(flatten)]
    limits: ImportLimitArgs,
}

#[derive(Args)]
struct ImportLimitArgs {
    /// Largest file one import accepts, in bytes.
    #[arg(long, env = "OFFERFLOW_IMPORT_MAX_BYTES", default_value_t = 50 * 1024 * 1024)]
    import_max_bytes: usize,
    /// Most client rows one import accepts.
    #[arg(long, env = "OFFERFLOW_IMPORT_MAX_ROWS", default_value_t = 200_000)]
    import_max_rows: usize,
}

#[derive(Subcommand)]
enum ProjectionsCommand {
    /// Shows each subscriber's checkpoint and lag.
    Status,
    /// Empties read models and replays the log into them (all, or the one named).
    Rebuild { name: Option<String> },
}

#[derive(Subcommand)]
enum SeedCommand {
    /// Adds the shipped products and sales channels that are not in the catalog yet.
    Catalog,
}

#[derive(Subcommand)]
enum AdminCommand {
    /// Creates a user who can sign in.
    CreateUser {
        #[arg(long)]
        email: String,
        #[arg(long, env = "OFFERFLOW_NEW_USER_PASSWORD", hide_env_values = true)]
        password: String,
        #[arg(long, default_value = "")]
        name: String,
        /// Make the user an admin.
        #[arg(long)]
        admin: bool,
    },
}

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_new(&cli.global.log)
                .unwrap_or_else(|_| "info".into()),
        )
        .with_target(false)
        .init();
    if let Err(error) = run(cli).await {
        eprintln!("error: {error:#}");
        std::process::exit(1);
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let g = &cli.global;
    let data_dir = g.data_dir.clone().unwrap_or_else(default_data_dir);
    let db = Database::open(
        g.database_url.as_deref(),
        &data_dir,
        g.pg_port,
        g.db_max_connections,
    )
    .await?;
    let result = match cli.command {
        Command::Serve(args) => run_serve(&db, &data_dir, args, g.argilla.config()?).await,
        Command::Worker { llm } => {
            let state = build_state(
                db.pool.clone(),
                StateOptions {
                    generation: llm.settings()?,
                    worker: Some(llm.worker().await?),
                    ..StateOptions::default()
                },
            )
            .await?;
            run_worker(state).await
        }
        Command::Migrate => {
            projections::MIGRATOR
                .run(&db.pool)
                .await
                .context("applying migrations")?;
            println!("migrations applied");
            Ok(())
        }
        Command::Projections { command } => {
            // With the export configured, its checkpoint shows and rebuilds like a read model's.
            let state = build_state(
                db.pool.clone(),
                StateOptions {
                    argilla: g.argilla.config()?,
                    ..StateOptions::default()
                },
            )
            .await?;
            match command {
                ProjectionsCommand::Status => print_status(&state).await,
                ProjectionsCommand::Rebuild { name } => rebuild(&state, name).await,
            }
        }
        Command::Seed {
            command: SeedCommand::Catalog,
        } => {
            let state = tool_state(&db).await?;
            let report = seed_catalog(&state, &cli_metadata()).await?;
            println!(
                "catalog: {} products and {} sales channels added, {} already there",
                report.products_added, report.channels_added, report.already_there
            );
            Ok(())
        }
        Command::Import(args) => {
            let state = tool_state(&db).await?;
            import_file(&state, args).await
        }
        Command::Admin {
            command:
                AdminCommand::CreateUser {
                    email,
                    password,
                    name,
                    admin,
                },
        } => {
            let state = tool_state(&db).await?;
            let body = NewUser {
                email,
                password,
                name,
                position: String::new(),
                subdivision: String::new(),
                is_admin: admin,
            };
            let (id, _) = register_user(&state, &cli_metadata(), system_admin(), body)
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            println!("user {id} created{}", if admin { " (admin)" } else { "" });
            Ok(())
        }
    };
    db.close().await?;
    result
}

/// A place the unprivileged `postgres` user can reach when we run as root (PostgreSQL refuses
/// to run as root, and a home directory under /root is closed to it).
fn default_data_dir() -> PathBuf {
    let home = std::env::var_os("HOME").map(PathBuf::from);
    let is_root = std::env::var("USER").map(|u| u == "root").unwrap_or(false)
        || home.as_deref() == Some(std::path::Path::new("/root"));
    match home {
        Some(home) if !is_root => home.join(".local/share/offerflow"),
        _ => PathBuf::from("/var/lib/offerflow"),
    }
}

async fn tool_state(db: &Database) -> anyhow::Result<AppState> {
    build_state(db.pool.clone(), StateOptions::default()).await
}

async fn run_serve(
    db: &Database,
    data_dir: &std::path::Path,
    args: ServeArgs,
    argilla: Option<inference_worker::argilla::ArgillaConfig>,
) -> anyhow::Result<()> {
    let config = AppConfig {
        max_body_bytes: args.max_body_bytes,
        consistency_wait_ms: args.consistency_wait_ms,
        access_token_ttl_seconds: args.access_token_ttl,
        refresh_token_ttl_seconds: args.refresh_token_ttl,
        ready_max_lag_seconds: args.ready_max_lag_seconds,
        import_max_bytes: args.import.import_max_bytes,
        import_max_rows: args.import.import_max_rows,
    };
    let worker = if args.worker {
        Some(args.llm.worker().await?)
    } else {
        None
    };
    let state = build_state(
        db.pool.clone(),
        StateOptions {
            config,
            jwt_secret: args.jwt_secret,
            engine: EngineConfig::default(),
            generation: args.llm.settings()?,
            worker,
            argilla,
        },
    )
    .await?;
    if db.is_embedded() {
        offerflow_http::demo::install_demo_source(&state.pool, &db.url).await?;
    }
    let first_admin = if args.bootstrap {
        bootstrap(&state).await?
    } else {
        None
    };
    let embedded = db
        .is_embedded()
        .then(|| data_dir.join("postgres").display().to_string());
    serve(state, args.bind, move |addr| {
        println!();
        println!("Offerflow is running at http://{addr}/  (API docs: http://{addr}/api/docs)");
        if let Some(dir) = embedded {
            println!("Using its own PostgreSQL, data in {dir} (set DATABASE_URL to use another).");
        }
        if let Some(admin) = first_admin {
            println!();
            println!("First admin (shown once, change it after signing in):");
            println!("  email:    {}", admin.email);
            println!("  password: {}", admin.password);
        }
        println!();
    })
    .await
}

async fn print_status(state: &AppState) -> anyhow::Result<()> {
    let statuses = state.engine.status().await?;
    println!(
        "{:<18} {:>12} {:>12} {:>10} {:>10}",
        "subscriber", "position", "processed", "behind", "lag (s)"
    );
    for s in statuses {
        println!(
            "{:<18} {:>12} {:>12} {:>10} {:>10.3}",
            s.name, s.last_position, s.events_processed, s.events_behind, s.lag_seconds
        );
    }
    if state.argilla.is_some() {
        let (dead,): (i64,) = sqlx::query_as("SELECT count(*) FROM argilla_dead_letters")
            .fetch_one(&state.pool)
            .await?;
        println!("argilla_export: {dead} dead-lettered message(s) (GET /api/v1/admin/argilla/dead-letters)");
    }
    Ok(())
}

async fn rebuild(state: &AppState, name: Option<String>) -> anyhow::Result<()> {
    let names = match name {
        Some(name) => vec![name],
        // Every read model; a reactor (the Argilla export) only when named, as replaying it
        // sends everything out again.
        None => state.engine.read_model_names(),
    };
    for name in names {
        let bar = ProgressBar::new(0);
        bar.set_style(
            ProgressStyle::with_template(
                "{prefix:>16} [{bar:40}] {pos}/{len} events ({per_sec}, {eta} left)",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        bar.set_prefix(name.clone());
        bar.enable_steady_tick(Duration::from_millis(200));
        let report = state
            .engine
            .rebuild(&name, |p| {
                bar.set_length(p.total.max(0) as u64);
                bar.set_position(p.processed.max(0) as u64);
            })
            .await?;
        bar.finish_and_clear();
        println!(
            "{:<18} rebuilt: {} events in {:.2} s ({:.0} events/s)",
            report.name,
            report.events,
            report.elapsed.as_secs_f64(),
            report.events_per_second()
        );
    }
    Ok(())
}

async fn import_file(state: &AppState, args: ImportArgs) -> anyhow::Result<()> {
    use domain::project::Project;
    use offerflow_http::import::ImportLimits;
    use offerflow_http::import::{open_import, plan, read_decoding, read_file, record_import};

    let fail = |e: offerflow_http::error::ApiError| anyhow::anyhow!("{e}");
    let project: Project = state.bus.load(args.project).await.map_err(fail)?;
    if project.product_id.is_none() {
        anyhow::bail!("project {} does not exist", args.project);
    }
    if !project.channel_attached(args.channel) {
        anyhow::bail!(
            "sales channel {} is not attached to project {}",
            args.channel,
            args.project
        );
    }
    let decoding = match &args.decoding {
        Some(path) => {
            let bytes = std::fs::read(path)
                .with_context(|| format!("reading the decoding {}", path.display()))?;
            read_decoding(&bytes).map_err(fail)?
        }
        None => Vec::new(),
    };
    let limits = ImportLimits {
        max_bytes: args.limits.import_max_bytes,
        max_rows: args.limits.import_max_rows,
    };
    let name = args
        .file
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_else(|| "import".into());
    let spinner = ProgressBar::new_spinner();
    spinner.set_message(format!("reading {name}"));
    spinner.enable_steady_tick(Duration::from_millis(100));
    let size = std::fs::metadata(&args.file)
        .with_context(|| format!("reading {}", args.file.display()))?
        .len();
    if size > limits.max_bytes as u64 {
        anyhow::bail!(
            "{name} is larger than {} bytes (OFFERFLOW_IMPORT_MAX_BYTES)",
            limits.max_bytes
        );
    }
    let bytes =
        std::fs::read(&args.file).with_context(|| format!("reading {}", args.file.display()))?;
    let reading = name.clone();
    let table = tokio::task::spawn_blocking(move || read_file(&reading, &bytes, limits))
        .await?
        .map_err(fail)?;
    spinner.finish_and_clear();
    let plan = plan(
        uuid::Uuid::new_v4(),
        args.project,
        args.channel,
        name.clone(),
        table,
        &decoding,
        cli_metadata(),
    )
    .map_err(fail)?;
    open_import(&state.pool, &plan, args.generate).await?;
    let bar = ProgressBar::new(plan.table.rows.len() as u64);
    bar.set_style(
        ProgressStyle::with_template(
            "{prefix} [{bar:40}] {pos}/{len} rows ({per_sec}, {eta} left)",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    bar.set_prefix(name.clone());
    let summary = match record_import(state, &plan, &|done, _| bar.set_position(done)).await {
        Ok(summary) => summary,
        Err(e) => {
            let _ =
                offerflow_http::import::fail_import(&state.pool, plan.import_id, &format!("{e:#}"))
                    .await;
            return Err(e);
        }
    };
    bar.finish_and_clear();
    println!(
        "{name}: {} rows, {} created, {} duplicates, {} rejected (import {})",
        summary.rows,
        summary.created,
        summary.duplicates,
        summary.rejected.len(),
        plan.import_id
    );
    for rejected in summary.rejected.iter().take(20) {
        let sheet = rejected
            .sheet
            .as_deref()
            .map(|s| format!("{s}, "))
            .unwrap_or_default();
        println!(
            "  rejected: {sheet}row {}: {}",
            rejected.row, rejected.reason
        );
    }
    if summary.rejected.len() > 20 {
        println!("  … and {} more rejected rows", summary.rejected.len() - 20);
    }
    if args.generate {
        let queued = offerflow_http::routes::imports::queue_generations(
            state,
            &project,
            args.channel,
            &summary.created_ids,
            &plan.metadata,
        )
        .await
        .map_err(fail)?;
        sqlx::query("UPDATE client_imports SET generations_queued = $2 WHERE id = $1")
            .bind(plan.import_id)
            .bind(queued as i64)
            .execute(&state.pool)
            .await?;
        println!("{queued} offers queued for generation");
    }
    Ok(())
}
