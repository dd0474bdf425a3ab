//! `aether`: parse the command line, set up logging, dispatch, map errors to exit codes.

use clap::Parser;

use aether::cli::{self, Cli, Cmd, Failure, exit};
use aether::node::TokenSource;

fn main() {
    aether::platform::keep_cpu_gate();
    aether::platform::confine_name_services();
    let cli = Cli::parse();
    let daemon = matches!(cli.command, Cmd::Node(_));
    if !daemon {
        // Client output piped into `head` and the like ends quietly when the reader goes away.
        // SAFETY: restoring the default disposition of SIGPIPE before any thread starts.
        unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    }
    aether::init_tracing(if daemon { "info" } else { "warn" });
    // The daemon's runtime follows its config; a client command needs one thread.
    let node = match &cli.command {
        Cmd::Node(args) => match cli::node_config(&cli, args) {
            Ok(c) => Some((c, args)),
            Err(f) => fail(f),
        },
        _ => None,
    };
    if let Some(((cfg, ..), _)) = &node {
        // Before any thread starts: candle sizes its pools from the environment once.
        aether::controller::model::set_threads(cfg.controller.model.threads);
    }
    let built = match &node {
        Some(((cfg, ..), _)) => tokio::runtime::Builder::new_multi_thread()
            .worker_threads(cfg.worker_threads)
            .enable_all()
            .build(),
        None => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build(),
    };
    let rt = match built {
        Ok(rt) => rt,
        Err(e) => fail(Failure::new(
            exit::FAILED,
            format!("cannot start the async runtime: {e}"),
        )),
    };
    let result = rt.block_on(async {
        match node {
            Some(((cfg, dir, rules), args)) => {
                let join = aether::node::JoinArgs {
                    addr: args.join.clone(),
                    token: match (&args.token_file, &args.token) {
                        (Some(file), _) => Some(TokenSource::File(file.clone())),
                        (None, Some(token)) => Some(TokenSource::Value {
                            token: token.clone(),
                            what: "AETHER_TOKEN or --token",
                        }),
                        (None, None) => None,
                    },
                };
                aether::node::run(cfg, dir, join, rules).await.map_err(|e| {
                    match e.downcast_ref::<aether::node::JoinTokenError>() {
                        // Bad input: exit 2.
                        Some(t) => Failure::new(exit::USAGE, t.to_string()),
                        None => Failure::from(e),
                    }
                })
            }
            None => cli::run_client(&cli).await,
        }
    });
    rt.shutdown_timeout(std::time::Duration::from_secs(1));
    match result {
        Ok(()) => std::process::exit(exit::OK),
        Err(f) => fail(f),
    }
}

fn fail(f: Failure) -> ! {
    eprintln!("error: {}", f.message);
    std::process::exit(f.code)
}
