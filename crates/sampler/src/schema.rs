//! Compiles a JSON Schema (or plain "any JSON") into the grammar the automaton runs.
//!
//! The grammar is a table of [`Node`]s, one per sub-schema, that refer to each other by
//! index, so `$ref` recursion is just a cycle in the table. Objects produce their
//! properties in the order the schema declares them (required ones always, optional ones
//! when the model chooses to), as llama.cpp's `json-schema-to-grammar` does: every output
//! is valid, and the key order is the one the schema author wrote. Properties outside
//! `properties` are never generated, whether `additionalProperties` is false, true or
//! absent — except for an object schema that lists no properties and requires none, which
//! allows any object.
//!
//! Anything the compiler does not implement fails with an error naming the keyword and
//! where it is, rather than being silently ignored: an ignored assertion (`pattern`,
//! `minimum`, …) would let invalid output through.

use std::collections::HashMap;

use serde_json::{Map, Value};

use crate::Error;

/// Index of a node in [`Grammar::nodes`].
pub(crate) type NodeId = u32;

/// Any string (object keys of free-form objects).
pub(crate) const ANY_STRING: NodeId = 0;
/// Any JSON value.
pub(crate) const ANY: NodeId = 1;
/// `false`, `null`, `true`: the keyword literals of a free-form value.
pub(crate) const KEYWORDS: NodeId = 2;
/// Any JSON object (OpenAI's `json_object` response format).
pub(crate) const ANY_OBJECT: NodeId = 3;

/// One sub-schema.
#[derive(Debug, Clone)]
pub(crate) enum Node {
    /// Any JSON value (free-form objects and arrays nest up to a depth limit).
    Any,
    /// Any JSON object.
    AnyObject,
    /// An object with known properties, produced in declaration order.
    Object(ObjectNode),
    /// An array whose items all match `items`, with `min..=max` of them.
    Array { items: NodeId, min: u32, max: u32 },
    /// A string of `min..=max` characters (code points, as JSON Schema counts them).
    String { min: u32, max: u32 },
    /// A number; `integer` allows neither a fraction nor an exponent.
    Number { integer: bool },
    /// One of these exact serialisations (enum, const, booleans, null), sorted, distinct.
    Literals(Vec<Box<[u8]>>),
    /// Any one of these nodes (never themselves `AnyOf`).
    AnyOf(Vec<NodeId>),
    /// A `$ref` target being compiled (only seen while compiling).
    Pending,
}

/// An object schema's properties.
#[derive(Debug, Clone)]
pub(crate) struct ObjectNode {
    /// The properties in declaration order.
    pub(crate) props: Vec<Property>,
    /// `(quoted key bytes, property index)`, sorted by bytes, for matching keys.
    pub(crate) sorted_keys: Vec<(Box<[u8]>, u16)>,
    /// `required_from[i]`: index of the first required property at or after `i`, or
    /// `props.len()`; entry `props.len()` exists too.
    pub(crate) required_from: Vec<u16>,
}

/// One property of an object schema.
#[derive(Debug, Clone)]
pub(crate) struct Property {
    /// The key's value schema.
    pub(crate) node: NodeId,
}

/// A compiled constraint.
#[derive(Debug, Clone)]
pub(crate) struct Grammar {
    pub(crate) nodes: Vec<Node>,
    pub(crate) root: NodeId,
}

/// Keywords that only annotate: accepted and ignored.
const ANNOTATIONS: &[&str] = &[
    "title",
    "description",
    "default",
    "examples",
    "$schema",
    "$id",
    "$comment",
    "deprecated",
    "readOnly",
    "writeOnly",
];
/// Keywords the compiler implements.
const SUPPORTED: &[&str] = &[
    "type",
    "enum",
    "const",
    "properties",
    "required",
    "additionalProperties",
    "items",
    "minItems",
    "maxItems",
    "minLength",
    "maxLength",
    "anyOf",
    "oneOf",
    "$ref",
    "$defs",
    "definitions",
];
const OBJECT_KEYWORDS: &[&str] = &["properties", "required", "additionalProperties"];
const ARRAY_KEYWORDS: &[&str] = &["items", "minItems", "maxItems"];
const STRING_KEYWORDS: &[&str] = &["minLength", "maxLength"];
/// Most properties one object schema may have (key ranges are 16-bit in the automaton).
const MAX_PROPERTIES: usize = 4096;

impl Grammar {
    /// Any JSON value, or any JSON object when `object_only`.
    pub(crate) fn any_json(object_only: bool) -> Self {
        Self {
            nodes: base_nodes(),
            root: if object_only { ANY_OBJECT } else { ANY },
        }
    }

    /// Compiles a JSON Schema.
    pub(crate) fn from_schema(schema: &Value) -> Result<Self, Error> {
        let mut compiler = Compiler {
            root: schema,
            nodes: base_nodes(),
            refs: HashMap::new(),
        };
        let root = compiler.compile(schema, "#")?;
        Ok(Self {
            nodes: compiler.nodes,
            root,
        })
    }

    pub(crate) fn node(&self, id: NodeId) -> &Node {
        &self.nodes[id as usize]
    }

    /// The most characters a string node allows (`u32::MAX` when unbounded).
    pub(crate) fn string_max(&self, id: NodeId) -> u32 {
        match self.node(id) {
            Node::String { max, .. } => *max,
            _ => u32::MAX,
        }
    }
}

fn base_nodes() -> Vec<Node> {
    vec![
        Node::String {
            min: 0,
            max: u32::MAX,
        },
        Node::Any,
        Node::Literals(vec![
            b"false"[..].into(),
            b"null"[..].into(),
            b"true"[..].into(),
        ]),
        Node::AnyObject,
    ]
}

struct Compiler<'a> {
    root: &'a Value,
    nodes: Vec<Node>,
    /// `$ref` string → node, so each target compiles once and recursion terminates.
    refs: HashMap<String, NodeId>,
}

fn invalid(path: &str, reason: impl Into<String>) -> Error {
    Error::InvalidSchema {
        path: path.to_owned(),
        reason: reason.into(),
    }
}

fn unsupported(path: &str, reason: impl Into<String>) -> Error {
    Error::UnsupportedSchema {
        path: path.to_owned(),
        reason: reason.into(),
    }
}

/// A non-negative integer keyword value (`minItems`, …), clamped to `u32`.
fn count(map: &Map<String, Value>, keyword: &str, path: &str) -> Result<Option<u32>, Error> {
    match map.get(keyword) {
        None => Ok(None),
        Some(v) => match v.as_u64() {
            Some(n) => Ok(Some(n.min(u64::from(u32::MAX)) as u32)),
            None if v.as_f64().is_some_and(|f| f >= 0.0 && f.fract() == 0.0) => Ok(Some(
                v.as_f64().unwrap_or(0.0).min(f64::from(u32::MAX)) as u32,
            )),
            None => Err(invalid(
                path,
                format!("`{keyword}` must be a non-negative integer, not {v}"),
            )),
        },
    }
}

/// Does `value` have JSON Schema type `ty`?
fn has_type(value: &Value, ty: &str) -> bool {
    match ty {
        "object" => value.is_object(),
        "array" => value.is_array(),
        "string" => value.is_string(),
        "number" => value.is_number(),
        "integer" => value.as_f64().is_some_and(|f| f.fract() == 0.0) && value.is_number(),
        "boolean" => value.is_boolean(),
        "null" => value.is_null(),
        _ => false,
    }
}

/// Unescapes one JSON-pointer segment (`~1` → `/`, `~0` → `~`).
fn pointer_segment(segment: &str) -> String {
    segment.replace("~1", "/").replace("~0", "~")
}

impl Compiler<'_> {
    fn push(&mut self, node: Node) -> NodeId {
        self.nodes.push(node);
        (self.nodes.len() - 1) as NodeId
    }

    fn compile(&mut self, schema: &Value, path: &str) -> Result<NodeId, Error> {
        let map = match schema {
            Value::Bool(true) => return Ok(ANY),
            Value::Bool(false) => return Err(invalid(path, "the schema `false` matches nothing")),
            Value::Object(map) => map,
            other => {
                return Err(invalid(
                    path,
                    format!("a schema must be an object or a boolean, not {other}"),
                ));
            }
        };
        for key in map.keys() {
            if !SUPPORTED.contains(&key.as_str()) && !ANNOTATIONS.contains(&key.as_str()) {
                return Err(Error::UnsupportedKeyword {
                    keyword: key.clone(),
                    path: path.to_owned(),
                });
            }
        }
        let assertions: Vec<&str> = map
            .keys()
            .map(String::as_str)
            .filter(|k| !ANNOTATIONS.contains(k) && !["$defs", "definitions"].contains(k))
            .collect();

        if let Some(reference) = map.get("$ref") {
            if let Some(other) = assertions.iter().find(|k| **k != "$ref") {
                return Err(unsupported(
                    path,
                    format!("`$ref` next to `{other}`; move `{other}` into the referenced schema"),
                ));
            }
            let Some(reference) = reference.as_str() else {
                return Err(invalid(path, "`$ref` must be a string"));
            };
            return self.compile_ref(reference, path);
        }
        for combinator in ["anyOf", "oneOf"] {
            if let Some(alternatives) = map.get(combinator) {
                if let Some(other) = assertions.iter().find(|k| **k != combinator) {
                    return Err(unsupported(
                        path,
                        format!(
                            "`{combinator}` next to `{other}`; move `{other}` into each alternative"
                        ),
                    ));
                }
                return self.compile_any_of(alternatives, combinator, path);
            }
        }
        if map.contains_key("enum") || map.contains_key("const") {
            return self.compile_literals(map, path);
        }
        let types: Vec<&str> = match map.get("type") {
            None => {
                let has = |keywords: &[&str]| keywords.iter().any(|k| map.contains_key(*k));
                let mut inferred = Vec::new();
                if has(OBJECT_KEYWORDS) {
                    inferred.push("object");
                }
                if has(ARRAY_KEYWORDS) {
                    inferred.push("array");
                }
                if has(STRING_KEYWORDS) {
                    inferred.push("string");
                }
                if inferred.is_empty() {
                    return Ok(ANY);
                }
                inferred
            }
            Some(Value::String(t)) => vec![t.as_str()],
            Some(Value::Array(ts)) => {
                let mut out = Vec::new();
                for t in ts {
                    match t.as_str() {
                        Some(t) => out.push(t),
                        None => {
                            return Err(invalid(
                                path,
                                format!("`type` entries must be strings, not {t}"),
                            ));
                        }
                    }
                }
                if out.is_empty() {
                    return Err(invalid(path, "`type` is an empty list"));
                }
                out
            }
            Some(other) => {
                return Err(invalid(
                    path,
                    format!("`type` must be a string or a list, not {other}"),
                ));
            }
        };
        let mut alternatives = Vec::new();
        for ty in types {
            alternatives.push(self.compile_type(ty, map, path)?);
        }
        self.any_of(alternatives, path)
    }

    fn compile_type(
        &mut self,
        ty: &str,
        map: &Map<String, Value>,
        path: &str,
    ) -> Result<NodeId, Error> {
        match ty {
            "object" => self.compile_object(map, path),
            "array" => {
                let min = count(map, "minItems", path)?.unwrap_or(0);
                let max = count(map, "maxItems", path)?.unwrap_or(u32::MAX);
                if min > max {
                    return Err(invalid(
                        path,
                        format!("minItems {min} is greater than maxItems {max}"),
                    ));
                }
                let items = match map.get("items") {
                    None => ANY,
                    Some(Value::Array(_)) => {
                        return Err(unsupported(
                            path,
                            "`items` as a list (tuple validation); use one schema",
                        ));
                    }
                    Some(items) if max == 0 => {
                        // No item will ever be produced; still reject what cannot compile.
                        self.compile(items, &format!("{path}/items"))?
                    }
                    Some(items) => self.compile(items, &format!("{path}/items"))?,
                };
                Ok(self.push(Node::Array { items, min, max }))
            }
            "string" => {
                let min = count(map, "minLength", path)?.unwrap_or(0);
                let max = count(map, "maxLength", path)?.unwrap_or(u32::MAX);
                if min > max {
                    return Err(invalid(
                        path,
                        format!("minLength {min} is greater than maxLength {max}"),
                    ));
                }
                Ok(self.push(Node::String { min, max }))
            }
            "number" => Ok(self.push(Node::Number { integer: false })),
            "integer" => Ok(self.push(Node::Number { integer: true })),
            "boolean" => Ok(self.push(Node::Literals(vec![
                b"false"[..].into(),
                b"true"[..].into(),
            ]))),
            "null" => Ok(self.push(Node::Literals(vec![b"null"[..].into()]))),
            other => Err(invalid(path, format!("unknown type {other:?}"))),
        }
    }

    fn compile_object(&mut self, map: &Map<String, Value>, path: &str) -> Result<NodeId, Error> {
        let closed = match map.get("additionalProperties") {
            None | Some(Value::Bool(true)) => false,
            Some(Value::Bool(false)) => true,
            Some(_) => {
                return Err(unsupported(
                    path,
                    "`additionalProperties` as a schema; use false, true or leave it out",
                ));
            }
        };
        let mut required: Vec<&str> = Vec::new();
        match map.get("required") {
            None => {}
            Some(Value::Array(names)) => {
                for name in names {
                    match name.as_str() {
                        Some(n) if !required.contains(&n) => required.push(n),
                        Some(_) => {}
                        None => {
                            return Err(invalid(
                                path,
                                format!("`required` entries must be strings, not {name}"),
                            ));
                        }
                    }
                }
            }
            Some(other) => {
                return Err(invalid(
                    path,
                    format!("`required` must be a list, not {other}"),
                ));
            }
        }
        if !closed && required.is_empty() && !map.contains_key("properties") {
            // `{"type": "object"}` alone: any object at all.
            return Ok(ANY_OBJECT);
        }
        let mut names: Vec<(String, NodeId, bool)> = Vec::new();
        match map.get("properties") {
            None => {}
            Some(Value::Object(props)) => {
                for (name, schema) in props {
                    let escaped = name.replace('~', "~0").replace('/', "~1");
                    let node = self.compile(schema, &format!("{path}/properties/{escaped}"))?;
                    names.push((name.clone(), node, required.contains(&name.as_str())));
                }
            }
            Some(other) => {
                return Err(invalid(
                    path,
                    format!("`properties` must be an object, not {other}"),
                ));
            }
        }
        for name in &required {
            if !names.iter().any(|(n, _, _)| n == name) {
                if closed {
                    return Err(invalid(
                        path,
                        format!(
                            "required property {name:?} is not in `properties` and additional properties are not allowed"
                        ),
                    ));
                }
                // Open object: the required property may hold any value.
                names.push(((*name).to_owned(), ANY, true));
            }
        }
        if names.len() > MAX_PROPERTIES {
            return Err(unsupported(
                path,
                format!("{} properties; at most {MAX_PROPERTIES}", names.len()),
            ));
        }
        let mut props = Vec::with_capacity(names.len());
        let mut sorted_keys = Vec::with_capacity(names.len());
        for (index, (name, node, _)) in names.iter().enumerate() {
            let key = serde_json::to_vec(&Value::String(name.clone()))
                .map_err(|e| invalid(path, format!("property {name:?}: {e}")))?;
            sorted_keys.push((key.into_boxed_slice(), index as u16));
            props.push(Property { node: *node });
        }
        sorted_keys.sort();
        let mut required_from = vec![names.len() as u16; names.len() + 1];
        for i in (0..names.len()).rev() {
            required_from[i] = if names[i].2 {
                i as u16
            } else {
                required_from[i + 1]
            };
        }
        Ok(self.push(Node::Object(ObjectNode {
            props,
            sorted_keys,
            required_from,
        })))
    }

    fn compile_literals(&mut self, map: &Map<String, Value>, path: &str) -> Result<NodeId, Error> {
        let mut values: Vec<&Value> = match map.get("enum") {
            None => Vec::new(),
            Some(Value::Array(values)) => values.iter().collect(),
            Some(other) => {
                return Err(invalid(path, format!("`enum` must be a list, not {other}")));
            }
        };
        if let Some(constant) = map.get("const") {
            if map.contains_key("enum") {
                values.retain(|v| *v == constant);
            } else {
                values.push(constant);
            }
        }
        let types: Option<Vec<&str>> = match map.get("type") {
            None => None,
            Some(Value::String(t)) => Some(vec![t.as_str()]),
            Some(Value::Array(ts)) => Some(ts.iter().filter_map(Value::as_str).collect()),
            Some(other) => {
                return Err(invalid(
                    path,
                    format!("`type` must be a string or a list, not {other}"),
                ));
            }
        };
        if let Some(types) = types {
            values.retain(|v| types.iter().any(|t| has_type(v, t)));
        }
        for keyword in map.keys() {
            let k = keyword.as_str();
            if !["enum", "const", "type"].contains(&k)
                && !ANNOTATIONS.contains(&k)
                && !["$defs", "definitions"].contains(&k)
            {
                return Err(unsupported(
                    path,
                    format!("`{k}` next to `enum`/`const`; list only the values that satisfy it"),
                ));
            }
        }
        let mut literals = Vec::with_capacity(values.len());
        for v in values {
            let bytes =
                serde_json::to_vec(v).map_err(|e| invalid(path, format!("enum value {v}: {e}")))?;
            literals.push(bytes.into_boxed_slice());
        }
        literals.sort();
        literals.dedup();
        if literals.is_empty() {
            return Err(invalid(path, "`enum`/`const` leaves no value that matches"));
        }
        Ok(self.push(Node::Literals(literals)))
    }

    fn compile_any_of(
        &mut self,
        alternatives: &Value,
        combinator: &str,
        path: &str,
    ) -> Result<NodeId, Error> {
        let Value::Array(list) = alternatives else {
            return Err(invalid(path, format!("`{combinator}` must be a list")));
        };
        if list.is_empty() {
            return Err(invalid(path, format!("`{combinator}` is an empty list")));
        }
        let mut ids = Vec::with_capacity(list.len());
        for (i, alternative) in list.iter().enumerate() {
            ids.push(self.compile(alternative, &format!("{path}/{combinator}/{i}"))?);
        }
        if combinator == "oneOf" {
            // Exactly one must match. Guaranteed when no two alternatives can start with the
            // same kind of value; otherwise a value could match two of them.
            let mut seen = 0u8;
            for (i, &id) in ids.iter().enumerate() {
                let kinds = self.kinds(id);
                if kinds & seen != 0 {
                    return Err(unsupported(
                        &format!("{path}/oneOf/{i}"),
                        "`oneOf` whose alternatives can match values of the same JSON type; use `anyOf` if overlaps are acceptable",
                    ));
                }
                seen |= kinds;
            }
        }
        self.any_of(ids, path)
    }

    /// A node for "any of these": the single one, or a flattened, de-duplicated `AnyOf`.
    fn any_of(&mut self, ids: Vec<NodeId>, path: &str) -> Result<NodeId, Error> {
        let mut flat: Vec<NodeId> = Vec::with_capacity(ids.len());
        for id in ids {
            match &self.nodes[id as usize] {
                Node::AnyOf(inner) => {
                    for &alt in inner {
                        if !flat.contains(&alt) {
                            flat.push(alt);
                        }
                    }
                }
                Node::Pending => {
                    return Err(unsupported(
                        path,
                        "a `$ref` cycle that reaches an alternative without going through an object or array",
                    ));
                }
                _ => {
                    if !flat.contains(&id) {
                        flat.push(id);
                    }
                }
            }
        }
        if flat.len() == 1 {
            return Ok(flat[0]);
        }
        Ok(self.push(Node::AnyOf(flat)))
    }

    fn compile_ref(&mut self, reference: &str, path: &str) -> Result<NodeId, Error> {
        if let Some(&id) = self.refs.get(reference) {
            return Ok(id);
        }
        let Some(pointer) = reference.strip_prefix('#') else {
            return Err(unsupported(
                path,
                format!("`$ref` {reference:?}: only local references (`#/$defs/…`) are supported"),
            ));
        };
        let mut target = self.root;
        for segment in pointer.split('/').skip(1) {
            let segment = pointer_segment(segment);
            target = match target {
                Value::Object(m) => m.get(&segment),
                Value::Array(a) => segment.parse::<usize>().ok().and_then(|i| a.get(i)),
                _ => None,
            }
            .ok_or_else(|| invalid(path, format!("`$ref` {reference:?} points to nothing")))?;
        }
        let id = self.push(Node::Pending);
        self.refs.insert(reference.to_owned(), id);
        let compiled = self.compile(target, reference)?;
        match &self.nodes[compiled as usize] {
            Node::Pending => Err(unsupported(
                path,
                format!("`$ref` {reference:?} refers only to itself"),
            )),
            node => {
                self.nodes[id as usize] = node.clone();
                Ok(id)
            }
        }
    }

    /// Which kinds of JSON value (bit set) a node can start with.
    fn kinds(&self, id: NodeId) -> u8 {
        const OBJECT: u8 = 1;
        const ARRAY: u8 = 2;
        const STRING: u8 = 4;
        const NUMBER: u8 = 8;
        const TRUE: u8 = 16;
        const FALSE: u8 = 32;
        const NULL: u8 = 64;
        match &self.nodes[id as usize] {
            Node::Any | Node::Pending => 0x7f,
            Node::AnyObject | Node::Object(_) => OBJECT,
            Node::Array { .. } => ARRAY,
            Node::String { .. } => STRING,
            Node::Number { .. } => NUMBER,
            Node::Literals(values) => values.iter().fold(0, |k, v| {
                k | match v.first() {
                    Some(b'{') => OBJECT,
                    Some(b'[') => ARRAY,
                    Some(b'"') => STRING,
                    Some(b't') => TRUE,
                    Some(b'f') => FALSE,
                    Some(b'n') => NULL,
                    _ => NUMBER,
                }
            }),
            Node::AnyOf(ids) => ids.iter().fold(0, |k, &i| k | self.kinds(i)),
        }
    }
}

#[cfg(test)]
#[path = "schema_tests.rs"]
mod tests;
