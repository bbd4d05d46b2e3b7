//! The pushdown automaton that recognises the grammar one byte at a time.
//!
//! A parse state is a stack of [`Frame`]s (root at the bottom, the construct being
//! written on top); `anyOf` makes the state a small set of such stacks. Stacks live in an
//! arena of [`Entry`]s linked to their parents, so advancing by a byte appends one or two
//! entries and shares the rest: the token-trie walk can fork the state at every trie node
//! and undo by truncating the arena (llama.cpp's grammar sampler keeps sets of stacks in
//! the same spirit, `src/llama-grammar.cpp`, `llama_grammar_advance_stack`).
//!
//! Every state the automaton reaches can still be completed into a valid value (checks
//! that would otherwise fail later, such as a lone UTF-16 surrogate or a missing required
//! key, are made at the first byte that decides them), so masking tokens by "has a valid
//! next state" never leads the model into a dead end.
//!
//! Bounds keep generation finite where JSON itself is not: at most [`MAX_WS`] whitespace
//! bytes between two tokens of JSON, at most [`MAX_INT_DIGITS`] integer digits,
//! [`MAX_FRAC_DIGITS`] fraction digits and [`MAX_EXP_DIGITS`] exponent digits (so every
//! number parses as a finite double), and free-form values nest at most
//! [`MAX_ANY_DEPTH`] deep.

use crate::schema::{ANY, ANY_OBJECT, ANY_STRING, Grammar, KEYWORDS, Node, NodeId};

/// Most whitespace bytes allowed in one gap between JSON tokens (and after the value).
pub(crate) const MAX_WS: u8 = 20;
/// Most digits before the decimal point.
pub(crate) const MAX_INT_DIGITS: u8 = 16;
/// Most digits after the decimal point.
pub(crate) const MAX_FRAC_DIGITS: u8 = 16;
/// Most exponent digits (so `1e999`, which no double holds, cannot be written).
pub(crate) const MAX_EXP_DIGITS: u8 = 2;
/// Deepest nesting of free-form objects and arrays.
pub(crate) const MAX_ANY_DEPTH: u16 = 32;
/// Deepest stack for schema values (bounds `$ref` recursion).
pub(crate) const MAX_STACK_DEPTH: u16 = 128;
/// No parent: the root entry.
pub(crate) const NO_PARENT: u32 = u32::MAX;

/// Where an object is between its braces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ObjectPhase {
    /// After `{`: a key or `}`.
    AfterOpen,
    /// Inside a key (schema objects match it here; free-form ones have a string child).
    Key,
    /// After the key: `:`.
    AfterKey,
    /// A value child is on top.
    Value,
    /// After a value: `,` or `}`.
    AfterValue,
    /// After `,`: a key.
    AfterComma,
}

/// Where an array is between its brackets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ArrayPhase {
    AfterOpen,
    Item,
    AfterValue,
    AfterComma,
}

/// Where a string is between its quotes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StringPhase {
    Plain,
    /// After `\`.
    Escape,
    /// In `\uXXXX`: `digits` read so far, their `value`; `low` for the second half of a
    /// surrogate pair.
    Hex {
        digits: u8,
        value: u16,
        low: bool,
    },
    /// After a high surrogate: the `\` of the low one.
    LowBackslash,
    /// After a high surrogate and `\`: the `u`.
    LowU,
    /// Inside a UTF-8 sequence: `left` continuation bytes to go, the next in `lo..=hi`.
    Continuation {
        left: u8,
        lo: u8,
        hi: u8,
    },
}

/// The number grammar of RFC 8259, as a DFA.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NumberPhase {
    Minus,
    Zero,
    Int,
    Dot,
    Frac,
    Exp,
    ExpSign,
    ExpDigits,
}

/// One level of the parse stack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Frame {
    /// The bottom: the value is below it until `done`, then only trailing whitespace.
    Root { done: bool, ws: u8 },
    /// Before a value of `node` (never an `AnyOf`), `ws` whitespace bytes in.
    Value { node: NodeId, ws: u8 },
    /// Inside an object. Schema objects: `next` is the first property that may still
    /// come; while in a key, `lo..hi` is the range of sorted keys still matching the
    /// `pos` bytes read; after the key, `lo` is the property.
    Object {
        node: NodeId,
        phase: ObjectPhase,
        ws: u8,
        next: u16,
        lo: u16,
        hi: u16,
        pos: u16,
    },
    /// Inside an array with `count` items so far.
    Array {
        node: NodeId,
        phase: ArrayPhase,
        ws: u8,
        count: u32,
    },
    /// Inside a string (after the opening quote) of `count` characters so far.
    Str {
        node: NodeId,
        count: u32,
        phase: StringPhase,
    },
    /// Inside a number.
    Number {
        integer: bool,
        phase: NumberPhase,
        digits: u8,
    },
    /// Inside one of the literals of `node`: `lo..hi` still match the `pos` bytes read.
    Literal {
        node: NodeId,
        lo: u32,
        hi: u32,
        pos: u32,
    },
}

/// A frame in the arena, linked to the frame below it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Entry {
    pub(crate) frame: Frame,
    pub(crate) parent: u32,
    pub(crate) depth: u16,
}

/// What a frame does with a byte.
enum Action {
    Reject,
    /// Byte consumed; the frame becomes this.
    Replace(Frame),
    /// Byte consumed; the frame becomes the first, the second is pushed on it.
    ReplacePush(Frame, Frame),
    /// The frame becomes `frame` and a value of `node` is pushed; `refeed` hands the
    /// byte to the new value, else it was consumed.
    ReplacePushValue {
        frame: Frame,
        node: NodeId,
        refeed: bool,
    },
    /// Byte consumed and the frame is complete.
    Pop,
    /// The frame was complete before this byte, which goes to the parent.
    PopRefeed,
}

fn is_ws(byte: u8) -> bool {
    matches!(byte, b' ' | b'\t' | b'\n' | b'\r')
}

fn push(arena: &mut Vec<Entry>, frame: Frame, parent: u32, depth: u16) -> u32 {
    arena.push(Entry {
        frame,
        parent,
        depth,
    });
    (arena.len() - 1) as u32
}

/// Pushes the state(s) for "a value of `node` comes next" on `parent`: one stack per
/// `anyOf` alternative. With `refeed`, `byte` is fed to each at once (the gap's
/// whitespace was already consumed by the parent).
#[allow(clippy::too_many_arguments)]
pub(crate) fn push_value(
    g: &Grammar,
    arena: &mut Vec<Entry>,
    parent: u32,
    depth: u16,
    node: NodeId,
    refeed: Option<u8>,
    out: &mut Vec<u32>,
) {
    if depth > MAX_STACK_DEPTH {
        return;
    }
    let ws = if refeed.is_some() { MAX_WS } else { 0 };
    let single = [node];
    let alternatives: &[NodeId] = match g.node(node) {
        Node::AnyOf(alternatives) => alternatives,
        _ => &single,
    };
    for &alternative in alternatives {
        let top = push(
            arena,
            Frame::Value {
                node: alternative,
                ws,
            },
            parent,
            depth,
        );
        match refeed {
            Some(byte) => step(g, arena, top, byte, out),
            None => out.push(top),
        }
    }
}

/// Advances the stack whose top is `top` by one byte, appending the resulting stacks'
/// tops to `out` (none when the byte is not allowed).
pub(crate) fn step(g: &Grammar, arena: &mut Vec<Entry>, top: u32, byte: u8, out: &mut Vec<u32>) {
    let entry = arena[top as usize];
    match transition(g, entry.frame, entry.depth, byte) {
        Action::Reject => {}
        Action::Replace(frame) => out.push(push(arena, frame, entry.parent, entry.depth)),
        Action::ReplacePush(frame, child) => {
            let parent = push(arena, frame, entry.parent, entry.depth);
            out.push(push(arena, child, parent, entry.depth + 1));
        }
        Action::ReplacePushValue {
            frame,
            node,
            refeed,
        } => {
            let parent = push(arena, frame, entry.parent, entry.depth);
            push_value(
                g,
                arena,
                parent,
                entry.depth + 1,
                node,
                refeed.then_some(byte),
                out,
            );
        }
        Action::Pop | Action::PopRefeed if entry.parent == NO_PARENT => {}
        Action::Pop => {
            let parent = arena[entry.parent as usize];
            out.push(push(
                arena,
                child_done(parent.frame),
                parent.parent,
                parent.depth,
            ));
        }
        Action::PopRefeed => {
            let parent = arena[entry.parent as usize];
            let top = push(arena, child_done(parent.frame), parent.parent, parent.depth);
            step(g, arena, top, byte, out);
        }
    }
}

/// The parent's frame once its child value is complete.
fn child_done(frame: Frame) -> Frame {
    match frame {
        Frame::Root { .. } => Frame::Root { done: true, ws: 0 },
        Frame::Object {
            node,
            next,
            lo,
            hi,
            pos,
            phase,
            ..
        } => {
            let phase = match phase {
                ObjectPhase::Key => ObjectPhase::AfterKey,
                _ => ObjectPhase::AfterValue,
            };
            Frame::Object {
                node,
                phase,
                ws: 0,
                next,
                lo,
                hi,
                pos,
            }
        }
        Frame::Array { node, count, .. } => Frame::Array {
            node,
            phase: ArrayPhase::AfterValue,
            ws: 0,
            count: count + 1,
        },
        other => other,
    }
}

/// Could the input end here (before an end-of-generation token)? True when the value is
/// complete, or when its last part is a number or literal that needs no closing byte.
pub(crate) fn can_end(g: &Grammar, arena: &[Entry], top: u32) -> bool {
    let entry = arena[top as usize];
    let top_level = || {
        entry.parent != NO_PARENT
            && matches!(
                arena[entry.parent as usize].frame,
                Frame::Root { done: false, .. }
            )
    };
    match entry.frame {
        Frame::Root { done, .. } => done,
        Frame::Number { phase, .. } => number_complete(phase) && top_level(),
        Frame::Literal { node, lo, pos, .. } => {
            literals(g, node)[lo as usize].len() == pos as usize && top_level()
        }
        _ => false,
    }
}

fn number_complete(phase: NumberPhase) -> bool {
    matches!(
        phase,
        NumberPhase::Zero | NumberPhase::Int | NumberPhase::Frac | NumberPhase::ExpDigits
    )
}

fn literals(g: &Grammar, node: NodeId) -> &[Box<[u8]>] {
    match g.node(node) {
        Node::Literals(values) => values,
        _ => &[],
    }
}

fn transition(g: &Grammar, frame: Frame, depth: u16, byte: u8) -> Action {
    match frame {
        Frame::Root { done: true, ws } if is_ws(byte) && ws < MAX_WS => {
            Action::Replace(Frame::Root {
                done: true,
                ws: ws + 1,
            })
        }
        Frame::Root { .. } => Action::Reject,
        Frame::Value { node, ws } => value(g, node, ws, depth, byte),
        Frame::Object { .. } => object(g, frame, byte),
        Frame::Array {
            node,
            phase,
            ws,
            count,
        } => array(g, node, phase, ws, count, byte),
        Frame::Str { node, count, phase } => string(g, node, count, phase, byte),
        Frame::Number {
            integer,
            phase,
            digits,
        } => number(integer, phase, digits, byte),
        Frame::Literal { node, lo, hi, pos } => literal(g, node, lo, hi, pos, byte),
    }
}

fn value(g: &Grammar, node: NodeId, ws: u8, depth: u16, byte: u8) -> Action {
    if is_ws(byte) {
        return if ws < MAX_WS {
            Action::Replace(Frame::Value { node, ws: ws + 1 })
        } else {
            Action::Reject
        };
    }
    let object = |node| {
        Action::Replace(Frame::Object {
            node,
            phase: ObjectPhase::AfterOpen,
            ws: 0,
            next: 0,
            lo: 0,
            hi: 0,
            pos: 0,
        })
    };
    let array = |node| {
        Action::Replace(Frame::Array {
            node,
            phase: ArrayPhase::AfterOpen,
            ws: 0,
            count: 0,
        })
    };
    let string = |node| {
        Action::Replace(Frame::Str {
            node,
            count: 0,
            phase: StringPhase::Plain,
        })
    };
    match (g.node(node), byte) {
        (Node::Any, b'{') if depth <= MAX_ANY_DEPTH => object(ANY),
        (Node::Any, b'[') if depth <= MAX_ANY_DEPTH => array(ANY),
        (Node::Any, b'"') => string(ANY_STRING),
        (Node::Any, b'-' | b'0'..=b'9') => number_start(false, byte),
        (Node::Any, _) => literal(g, KEYWORDS, 0, 3, 0, byte),
        (Node::AnyObject, b'{') => object(ANY_OBJECT),
        (Node::Object(_), b'{') => object(node),
        (Node::Array { .. }, b'[') => array(node),
        (Node::String { .. }, b'"') => string(node),
        (Node::Number { integer }, _) => number_start(*integer, byte),
        (Node::Literals(values), _) => literal(g, node, 0, values.len() as u32, 0, byte),
        _ => Action::Reject,
    }
}

fn number_start(integer: bool, byte: u8) -> Action {
    let phase = match byte {
        b'-' => NumberPhase::Minus,
        b'0' => NumberPhase::Zero,
        b'1'..=b'9' => NumberPhase::Int,
        _ => return Action::Reject,
    };
    let digits = u8::from(phase == NumberPhase::Int);
    Action::Replace(Frame::Number {
        integer,
        phase,
        digits,
    })
}

fn number(integer: bool, phase: NumberPhase, digits: u8, byte: u8) -> Action {
    use NumberPhase::*;
    let to = |phase, digits| {
        Action::Replace(Frame::Number {
            integer,
            phase,
            digits,
        })
    };
    let digit = byte.is_ascii_digit();
    match phase {
        Minus if byte == b'0' => to(Zero, 0),
        Minus if digit => to(Int, 1),
        Int if digit && digits < MAX_INT_DIGITS => to(Int, digits + 1),
        Zero | Int if byte == b'.' && !integer => to(Dot, 0),
        Zero | Int | Frac if matches!(byte, b'e' | b'E') && !integer => to(Exp, 0),
        Dot if digit => to(Frac, 1),
        Frac if digit && digits < MAX_FRAC_DIGITS => to(Frac, digits + 1),
        Exp if matches!(byte, b'+' | b'-') => to(ExpSign, 0),
        Exp | ExpSign if digit => to(ExpDigits, 1),
        ExpDigits if digit && digits < MAX_EXP_DIGITS => to(ExpDigits, digits + 1),
        Zero | Int | Frac | ExpDigits => Action::PopRefeed,
        Minus | Dot | Exp | ExpSign => Action::Reject,
    }
}

/// Narrows the sorted range `lo..hi` of `values` (all sharing their first `pos` bytes)
/// to those whose byte at `pos` is `byte`. Sorted order makes the result contiguous: the
/// value that ends at `pos` (if any) comes first, then the rest by their byte at `pos`.
/// Entries of a sorted table that are matched byte by byte.
trait Spelled {
    fn spelling(&self) -> &[u8];
}

impl Spelled for Box<[u8]> {
    fn spelling(&self) -> &[u8] {
        self
    }
}

impl Spelled for (Box<[u8]>, u16) {
    fn spelling(&self) -> &[u8] {
        &self.0
    }
}

fn narrow<T: Spelled>(values: &[T], lo: usize, hi: usize, pos: usize, byte: u8) -> (usize, usize) {
    let range = &values[lo..hi];
    let start = range.partition_point(|v| {
        let v = v.spelling();
        v.len() <= pos || v[pos] < byte
    });
    let end = range.partition_point(|v| {
        let v = v.spelling();
        v.len() <= pos || v[pos] <= byte
    });
    (lo + start, lo + end)
}

fn literal(g: &Grammar, node: NodeId, lo: u32, hi: u32, pos: u32, byte: u8) -> Action {
    let values = literals(g, node);
    let (start, end) = narrow(values, lo as usize, hi as usize, pos as usize, byte);
    if start < end {
        Action::Replace(Frame::Literal {
            node,
            lo: start as u32,
            hi: end as u32,
            pos: pos + 1,
        })
    } else if values
        .get(lo as usize)
        .is_some_and(|v| v.len() == pos as usize)
    {
        Action::PopRefeed
    } else {
        Action::Reject
    }
}

fn string(g: &Grammar, node: NodeId, count: u32, phase: StringPhase, byte: u8) -> Action {
    use StringPhase::*;
    let (min, max) = match g.node(node) {
        Node::String { min, max } => (*min, *max),
        _ => (0, u32::MAX),
    };
    let to = |count, phase| Action::Replace(Frame::Str { node, count, phase });
    let continuation = |left, lo, hi| {
        if count < max {
            to(count, Continuation { left, lo, hi })
        } else {
            Action::Reject
        }
    };
    let hex = |b: u8| char::from(b).to_digit(16).map(|d| d as u16);
    match phase {
        Plain => match byte {
            b'"' if count >= min => Action::Pop,
            b'"' => Action::Reject,
            _ if count >= max => Action::Reject,
            b'\\' => to(count, Escape),
            0x00..=0x1f => Action::Reject,
            0x20..=0x7f => to(count + 1, Plain),
            // UTF-8 as RFC 3629 defines it: no overlong forms, no surrogates, <= U+10FFFF.
            0xc2..=0xdf => continuation(1, 0x80, 0xbf),
            0xe0 => continuation(2, 0xa0, 0xbf),
            0xe1..=0xec | 0xee..=0xef => continuation(2, 0x80, 0xbf),
            0xed => continuation(2, 0x80, 0x9f),
            0xf0 => continuation(3, 0x90, 0xbf),
            0xf1..=0xf3 => continuation(3, 0x80, 0xbf),
            0xf4 => continuation(3, 0x80, 0x8f),
            _ => Action::Reject,
        },
        Continuation { left, lo, hi } if (lo..=hi).contains(&byte) => {
            if left == 1 {
                to(count + 1, Plain)
            } else {
                to(
                    count,
                    Continuation {
                        left: left - 1,
                        lo: 0x80,
                        hi: 0xbf,
                    },
                )
            }
        }
        Continuation { .. } => Action::Reject,
        Escape => match byte {
            b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => to(count + 1, Plain),
            b'u' => to(
                count,
                Hex {
                    digits: 0,
                    value: 0,
                    low: false,
                },
            ),
            _ => Action::Reject,
        },
        Hex { digits, value, low } => {
            let Some(d) = hex(byte) else {
                return Action::Reject;
            };
            let value = value << 4 | d;
            // The surrogate range is decided by the first two digits: D8–DB high, DC–DF low.
            match (digits, low) {
                (1, false) if (0xdc..=0xdf).contains(&value) => return Action::Reject,
                (0, true) if d != 0xd => return Action::Reject,
                (1, true) if !(0xdc..=0xdf).contains(&value) => return Action::Reject,
                _ => {}
            }
            if digits < 3 {
                to(
                    count,
                    Hex {
                        digits: digits + 1,
                        value,
                        low,
                    },
                )
            } else if !low && (0xd800..=0xdbff).contains(&value) {
                to(count, LowBackslash)
            } else {
                to(count + 1, Plain)
            }
        }
        LowBackslash if byte == b'\\' => to(count, LowU),
        LowU if byte == b'u' => to(
            count,
            Hex {
                digits: 0,
                value: 0,
                low: true,
            },
        ),
        LowBackslash | LowU => Action::Reject,
    }
}

fn array(g: &Grammar, node: NodeId, phase: ArrayPhase, ws: u8, count: u32, byte: u8) -> Action {
    let (items, min, max) = match g.node(node) {
        Node::Array { items, min, max } => (*items, *min, *max),
        _ => (ANY, 0, u32::MAX),
    };
    if is_ws(byte) && ws < MAX_WS && phase != ArrayPhase::Item {
        return Action::Replace(Frame::Array {
            node,
            phase,
            ws: ws + 1,
            count,
        });
    }
    let item = Frame::Array {
        node,
        phase: ArrayPhase::Item,
        ws: 0,
        count,
    };
    match phase {
        ArrayPhase::AfterOpen if byte == b']' => {
            if min == 0 {
                Action::Pop
            } else {
                Action::Reject
            }
        }
        ArrayPhase::AfterOpen if max > 0 => Action::ReplacePushValue {
            frame: item,
            node: items,
            refeed: true,
        },
        ArrayPhase::AfterValue if byte == b',' && count < max => Action::Replace(Frame::Array {
            node,
            phase: ArrayPhase::AfterComma,
            ws: 0,
            count,
        }),
        ArrayPhase::AfterValue if byte == b']' && count >= min => Action::Pop,
        ArrayPhase::AfterComma => Action::ReplacePushValue {
            frame: item,
            node: items,
            refeed: true,
        },
        _ => Action::Reject,
    }
}

fn object(g: &Grammar, frame: Frame, byte: u8) -> Action {
    let Frame::Object {
        node,
        phase,
        ws,
        next,
        lo,
        hi,
        pos,
    } = frame
    else {
        return Action::Reject;
    };
    let schema = match g.node(node) {
        Node::Object(object) => Some(object),
        _ => None,
    };
    let with = |phase, ws, next, lo, hi, pos| Frame::Object {
        node,
        phase,
        ws,
        next,
        lo,
        hi,
        pos,
    };
    if is_ws(byte) && !matches!(phase, ObjectPhase::Key | ObjectPhase::Value) {
        return if ws < MAX_WS {
            Action::Replace(with(phase, ws + 1, next, lo, hi, pos))
        } else {
            Action::Reject
        };
    }
    let remaining = schema.map_or(1, |o| o.props.len() - next as usize);
    let may_close = schema.is_none_or(|o| o.required_from[next as usize] as usize == o.props.len());
    match (phase, byte) {
        (ObjectPhase::AfterOpen | ObjectPhase::AfterValue, b'}') if may_close => Action::Pop,
        (ObjectPhase::AfterValue, b',') if remaining > 0 => {
            Action::Replace(with(ObjectPhase::AfterComma, 0, next, 0, 0, 0))
        }
        (ObjectPhase::AfterOpen | ObjectPhase::AfterComma, b'"') => match schema {
            None => Action::ReplacePush(
                with(ObjectPhase::Key, 0, next, 0, 0, 0),
                Frame::Str {
                    node: ANY_STRING,
                    count: 0,
                    phase: StringPhase::Plain,
                },
            ),
            Some(o) => key(node, o, next, 0, o.sorted_keys.len() as u16, 0, byte),
        },
        (ObjectPhase::Key, _) => match schema {
            Some(o) => key(node, o, next, lo, hi, pos, byte),
            None => Action::Reject,
        },
        (ObjectPhase::AfterKey, b':') => {
            let value_node = schema.map_or(ANY, |o| o.props[lo as usize].node);
            Action::ReplacePushValue {
                frame: with(ObjectPhase::Value, 0, next, lo, 0, 0),
                node: value_node,
                refeed: false,
            }
        }
        _ => Action::Reject,
    }
}

/// One byte of a key of a schema object. A property may come next if it is at or after
/// `next` and no required property lies before it.
fn key(
    node: NodeId,
    o: &crate::schema::ObjectNode,
    next: u16,
    lo: u16,
    hi: u16,
    pos: u16,
    byte: u8,
) -> Action {
    let last_allowed = o.required_from[next as usize].min(o.props.len().saturating_sub(1) as u16);
    let allowed = |p: u16| next <= p && p <= last_allowed;
    let (start, end) = narrow(&o.sorted_keys, lo as usize, hi as usize, pos as usize, byte);
    let mut any = false;
    for (k, p) in &o.sorted_keys[start..end] {
        if allowed(*p) {
            if k.len() == pos as usize + 1 {
                // The closing quote: keys never prefix each other, so this one is chosen.
                return Action::Replace(Frame::Object {
                    node,
                    phase: ObjectPhase::AfterKey,
                    ws: 0,
                    next: p + 1,
                    lo: *p,
                    hi: 0,
                    pos: 0,
                });
            }
            any = true;
        }
    }
    if !any {
        return Action::Reject;
    }
    Action::Replace(Frame::Object {
        node,
        phase: ObjectPhase::Key,
        ws: 0,
        next,
        lo: start as u16,
        hi: end as u16,
        pos: pos + 1,
    })
}
