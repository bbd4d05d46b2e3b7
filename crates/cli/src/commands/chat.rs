//! `tern chat [MODEL]`: interactive multi-turn chat.
//!
//! Each line typed is a user message; the answer streams to stdout. `/clear` starts a new
//! conversation, `/exit` (or end of input, Ctrl-D) quits, Ctrl-C stops the current answer
//! and keeps the program. Every turn renders the whole conversation with the chat
//! template; the session keeps the tokens already in its cache (the prefix cache), so
//! only the new part of the rendered prompt is fed — each answer ends with a line saying
//! how many prompt tokens came from the cache and the time to the first token.
//!
//! When the conversation outgrows the context, the turn is refused with an error (the
//! conversation is kept; `/clear` starts over). With `--context-shift`, the oldest turns
//! are dropped instead (the system message always stays), the conversation re-rendered
//! and fed again, and a line says how many turns went. Nothing is ever cut silently.

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
    /// When the conversation outgrows the context, drop its oldest turns (keeping the
    /// system message) instead of refusing the message
    #[arg(long)]
    pub context_shift: bool,
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
        let context = loaded.session.context_size();
        let render = |messages: &[Message]| -> anyhow::Result<Vec<u32>> {
            let prompt = chat_prompt_with(
                &loaded.template,
                loaded.session.tokenizer(),
                messages,
                &variables,
            )?;
            Ok(loaded.session.tokenize_prompt(&prompt))
        };
        let mut tokens = render(&messages)?;
        if args.context_shift && !fits_with_room(tokens.len(), context, args.sampling.max_tokens) {
            let mut error = None;
            let dropped = shift(&mut messages, |m| match render(m) {
                Ok(t) => fits_with_room(t.len(), context, args.sampling.max_tokens),
                Err(e) => {
                    error = Some(e);
                    true
                }
            });
            if let Some(e) = error {
                return Err(e);
            }
            tokens = render(&messages)?;
            if dropped > 0 {
                output::say(
                    global,
                    format!(
                        "(context shift: dropped the {dropped} oldest messages to fit the \
                         context of {context} tokens)"
                    ),
                );
            }
        }
        if tokens.len() >= context {
            messages.pop();
            output::say(
                global,
                format!(
                    "tern: the conversation ({} tokens) no longer fits the context of {context} \
                     tokens\nhelp: /clear starts over; --context-shift drops the oldest turns; \
                     a larger --ctx-size holds more",
                    tokens.len()
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
        output::say(
            global,
            format!(
                "[{} prompt tokens: {} from the cache, {} computed; first token after {:.0} ms]",
                tokens.len(),
                tokens.len() - generation.prompt_tokens_fed,
                generation.prompt_tokens_fed,
                generation.prompt_time.as_secs_f64() * 1e3
            ),
        );
        match generation.finish_reason {
            FinishReason::Cancelled => output::say(global, "(stopped)"),
            FinishReason::ContextFull => output::say(
                global,
                "(the context is full: the answer was cut; /clear starts over, --context-shift \
                 drops old turns)",
            ),
            _ => {}
        }
        messages.push(Message::assistant(generation.text));
    }
    Ok(())
}

/// Whether a prompt of `prompt` tokens leaves room for an answer: at least
/// `max_tokens`, or a quarter of the context when that is less.
fn fits_with_room(prompt: usize, context: usize, max_tokens: usize) -> bool {
    prompt + max_tokens.min(context / 4).max(1) <= context
}

/// Drops the oldest messages after the system messages, a turn (up to the next user
/// message) at a time, until `fits` or only the last user message is left. Returns how
/// many messages were dropped.
fn shift(messages: &mut Vec<Message>, mut fits: impl FnMut(&[Message]) -> bool) -> usize {
    let start = messages
        .iter()
        .position(|m| m.role != "system")
        .unwrap_or(messages.len());
    let mut dropped = 0;
    while !fits(messages) && messages.len() > start + 1 {
        // One turn: the first message and everything up to the next user message.
        let end = messages[start + 1..messages.len() - 1]
            .iter()
            .position(|m| m.role == "user")
            .map_or(messages.len() - 1, |i| start + 1 + i);
        dropped += end - start;
        messages.drain(start..end);
    }
    dropped
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conversation() -> Vec<Message> {
        vec![
            Message::system("be brief"),
            Message::user("one"),
            Message::assistant("1"),
            Message::user("two"),
            Message::assistant("2"),
            Message::user("three"),
        ]
    }

    fn texts(messages: &[Message]) -> Vec<String> {
        messages.iter().map(|m| m.content.to_string()).collect()
    }

    #[test]
    fn shift_drops_whole_turns_and_keeps_the_system_message() {
        let mut m = conversation();
        assert_eq!(shift(&mut m, |m| m.len() <= 4), 2);
        assert_eq!(texts(&m), ["be brief", "two", "2", "three"]);

        let mut m = conversation();
        assert_eq!(shift(&mut m, |_| false), 4, "the last user message stays");
        assert_eq!(texts(&m), ["be brief", "three"]);

        let mut m = conversation();
        assert_eq!(shift(&mut m, |_| true), 0);
        assert_eq!(m.len(), 6);
    }

    #[test]
    fn room_for_the_answer() {
        assert!(fits_with_room(100, 1000, 512));
        assert!(
            !fits_with_room(800, 1000, 512),
            "a quarter of 1000 is left for it"
        );
        assert!(fits_with_room(750, 1000, 512));
        assert!(fits_with_room(990, 1000, 10));
    }
}
