//! `tern chat [MODEL]`: interactive multi-turn chat.
//!
//! Each line typed is a user message; the answer streams to stdout. `/clear` starts a new
//! conversation, `/exit` (or end of input, Ctrl-D) quits, Ctrl-C stops the current answer
//! and keeps the program. Every turn renders the whole conversation with the chat
//! template; the session keeps the tokens already in its cache, so only the new part of
//! the rendered prompt is fed.

use std::io::{BufRead, IsTerminal, Write};
use std::ops::ControlFlow;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Context;
use tern_engine::FinishReason;
use tern_engine::session::chat_prompt_with;
use tern_tokenizer::chat::Message;

use super::run::{SamplingArgs, load};
use crate::cli::GlobalArgs;
use crate::output;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The model: a catalog name[:tag], store reference, path, hf://, URL or pip: reference
    /// (default: smollm2-135m-instruct)
    #[arg(value_name = "MODEL")]
    pub model: Option<String>,
    /// The model, as an option (same as the positional MODEL)
    #[arg(short, long = "model", value_name = "MODEL", conflicts_with = "model")]
    pub model_option: Option<String>,
    /// A system message that starts every conversation
    #[arg(long, value_name = "TEXT")]
    pub system: Option<String>,
    #[command(flatten)]
    pub sampling: SamplingArgs,
}

pub fn run(args: Args, global: &GlobalArgs) -> anyhow::Result<()> {
    let model = args.model.clone().or(args.model_option.clone());
    let mut loaded = load(global, model.as_deref(), &args.sampling)?;
    let interrupted = Arc::new(AtomicBool::new(false));
    {
        let flag = Arc::clone(&interrupted);
        ctrlc::set_handler(move || flag.store(true, Ordering::SeqCst))
            .context("installing the Ctrl-C handler")?;
    }
    let interactive = std::io::stdin().is_terminal();
    if interactive {
        output::say(
            global,
            format!(
                "{} — type a message; /clear starts over, /exit quits, Ctrl-C stops an answer",
                loaded.model.display
            ),
        );
    }
    let fresh = || -> Vec<Message> {
        args.system
            .iter()
            .map(|s| Message::system(s.clone()))
            .collect()
    };
    let mut messages = fresh();
    let variables = args.sampling.template_variables();
    let stdin = std::io::stdin();
    let mut lines = stdin.lock().lines();
    loop {
        if interactive {
            eprint!("> ");
            let _ = std::io::stderr().flush();
        }
        interrupted.store(false, Ordering::SeqCst);
        let Some(line) = lines.next() else { break };
        let line = line.context("reading the next message")?;
        let text = line.trim();
        match text {
            "" => continue,
            "/exit" | "/quit" | "/bye" => break,
            "/clear" => {
                messages = fresh();
                loaded.session.clear();
                output::say(global, "(new conversation)");
                continue;
            }
            _ => {}
        }
        messages.push(Message::user(text));
        let prompt = chat_prompt_with(
            &loaded.template,
            loaded.session.tokenizer(),
            &messages,
            &variables,
        )?;
        let tokens = loaded.session.tokenize_prompt(&prompt);
        if tokens.len() >= loaded.session.context_size() {
            messages.pop();
            output::say(
                global,
                format!(
                    "the conversation no longer fits the context of {} tokens: /clear to start over \
                     (or run with a larger --ctx-size)",
                    loaded.session.context_size()
                ),
            );
            continue;
        }
        let mut stdout = std::io::stdout().lock();
        let mut write_error = None;
        let generation =
            loaded
                .session
                .generate(&tokens, args.sampling.generate_options(), |piece| {
                    if let Err(e) = stdout
                        .write_all(piece.as_bytes())
                        .and_then(|()| stdout.flush())
                    {
                        write_error = Some(e);
                        return ControlFlow::Break(());
                    }
                    if interrupted.load(Ordering::SeqCst) {
                        return ControlFlow::Break(());
                    }
                    ControlFlow::Continue(())
                })?;
        writeln!(stdout)?;
        drop(stdout);
        if let Some(e) = write_error {
            return Err(e.into());
        }
        match generation.finish_reason {
            FinishReason::Cancelled => output::say(global, "(stopped)"),
            FinishReason::ContextFull => {
                output::say(global, "(the context is full: /clear to start over)")
            }
            _ => {}
        }
        messages.push(Message::assistant(generation.text));
    }
    Ok(())
}
