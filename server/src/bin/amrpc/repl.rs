//! `amrpc repl`: a prompt against a remote worker (upstream has an aRPC REPL).

use std::io::Write;
use std::time::Duration;

use amrpc_core::{Api, Args, Error, MutationType, Outcome, Value, Why};
use tokio::io::{AsyncBufReadExt, BufReader};

use amrpc_client::Mirror;

/// Help text.
pub(crate) const HELP: &str = "\
commands:
  add S1 [S2 …] [key=value …]      activate states (values: ints, true/false, else strings)
  remove S1 [S2 …] [key=value …]   deactivate states
  set S1 [S2 …] [key=value …]      make exactly these states active
  when S1 [S2 …] [secs]            wait until all are active (default 10 s)
  when-not S1 [S2 …] [secs]        wait until none is active
  inspect [S1 …]                   states with relations and ticks
  states | time                    active states with ticks / all ticks
  help | quit";

/// Parse `key=value` args.
pub(crate) fn parse_args(words: &[&str]) -> (Vec<String>, Option<Args>) {
    let mut states = Vec::new();
    let mut args = Args::new();
    for w in words {
        match w.split_once('=') {
            Some((k, v)) => {
                let val = if let Ok(i) = v.parse::<i64>() {
                    Value::Int(i)
                } else if let Ok(b) = v.parse::<bool>() {
                    Value::Bool(b)
                } else {
                    Value::Str(v.to_string())
                };
                args.insert(k, val);
            }
            None => states.push((*w).to_string()),
        }
    }
    (states, (!args.is_empty()).then_some(args))
}

/// Run one command line; returns the text to print, or `None` to quit.
pub(crate) async fn exec(m: &Mirror, line: &str) -> Option<String> {
    let words: Vec<&str> = line.split_whitespace().collect();
    let Some((cmd, rest)) = words.split_first() else {
        return Some(String::new());
    };
    let (states, args) = parse_args(rest);
    let names: Vec<&str> = states.iter().map(String::as_str).collect();
    let show = |r: Result<(Outcome, Option<Why>), Error>| match r {
        Ok((o, Some(why))) => format!("{o}: {why}\n{}", m.string_all()),
        Ok((o, None)) => format!("{o}\n{}", m.string_all()),
        Err(e) => format!("error: {e}"),
    };
    Some(match *cmd {
        "add" => show(m.mutate_why(MutationType::Add, &names, args).await),
        "remove" => show(m.mutate_why(MutationType::Remove, &names, args).await),
        "set" => show(m.mutate_why(MutationType::Set, &names, args).await),
        "when" | "when-not" => {
            let (secs, names): (u64, Vec<&str>) = match names.last().and_then(|s| s.parse::<u64>().ok()) {
                Some(s) => (s, names[..names.len() - 1].to_vec()),
                None => (10, names),
            };
            if let Some(s) = names.iter().find(|s| !m.has1(s)) {
                return Some(format!("error: {}", Error::StateUnknown((*s).to_string())));
            }
            let wait = if *cmd == "when" {
                m.when(&names, None)
            } else {
                m.when_not(&names, None)
            };
            match tokio::time::timeout(Duration::from_secs(secs), wait).await {
                Ok(Ok(())) => format!("ok\n{}", m.string_all()),
                Ok(Err(e)) => format!("error: {e}"),
                Err(_) => format!("timed out after {secs} s"),
            }
        }
        "inspect" => m.inspect((!names.is_empty()).then_some(&names[..])),
        "states" => m.string(),
        "time" => m
            .state_names()
            .iter()
            .zip(m.time(None))
            .map(|(n, t)| format!("{n}:{t}"))
            .collect::<Vec<_>>()
            .join(" "),
        "help" | "?" => HELP.to_string(),
        "quit" | "exit" => return None,
        other => format!("unknown command {other:?}; try help"),
    })
}

/// The interactive loop on stdin/stdout.
pub(crate) async fn run(m: Mirror) -> std::io::Result<()> {
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    println!("connected to {} — {}", m.id(), m.string_all());
    println!("type help for commands");
    loop {
        print!("> ");
        std::io::stdout().flush()?;
        let Some(line) = lines.next_line().await? else { break };
        match exec(&m, &line).await {
            Some(out) => {
                if !out.is_empty() {
                    println!("{out}");
                }
            }
            None => break,
        }
    }
    Ok(())
}
