//! Schema compilation: what is accepted, and the errors for what is not.

use serde_json::json;

use super::*;

fn err(schema: Value) -> Error {
    Grammar::from_schema(&schema).expect_err("the schema should be refused")
}

#[test]
fn unsupported_keywords_are_named_with_their_location() {
    let e = err(
        json!({"type": "object", "properties": {"zip": {"type": "string", "pattern": "^[0-9]+$"}}}),
    );
    assert_eq!(
        e,
        Error::UnsupportedKeyword {
            keyword: "pattern".into(),
            path: "#/properties/zip".into()
        }
    );
    assert!(
        e.to_string().contains("`pattern`") && e.to_string().contains("#/properties/zip"),
        "{e}"
    );
    for keyword in [
        "minimum",
        "format",
        "uniqueItems",
        "allOf",
        "not",
        "patternProperties",
        "prefixItems",
    ] {
        let mut schema = json!({"type": "integer"});
        schema[keyword] = json!(1);
        match err(schema) {
            Error::UnsupportedKeyword { keyword: k, path } => {
                assert_eq!((k.as_str(), path.as_str()), (keyword, "#"))
            }
            other => panic!("{keyword}: {other:?}"),
        }
    }
}

#[test]
fn unsupported_uses_and_invalid_schemas_say_why() {
    let cases = [
        (
            json!({"type": "array", "items": [{"type": "string"}]}),
            "tuple",
        ),
        (
            json!({"type": "object", "additionalProperties": {"type": "string"}}),
            "additionalProperties",
        ),
        (
            json!({"oneOf": [{"type": "integer"}, {"type": "number"}]}),
            "anyOf",
        ),
        (json!({"$ref": "http://example.com/s.json"}), "local"),
        (json!({"$ref": "#/$defs/missing"}), "points to nothing"),
        (
            json!({"type": "string", "minLength": 3, "maxLength": 2}),
            "minLength 3",
        ),
        (
            json!({"type": "array", "minItems": 2, "maxItems": 1}),
            "minItems 2",
        ),
        (json!({"enum": [1, 2], "type": "string"}), "no value"),
        (
            json!({"type": "object", "required": ["x"], "additionalProperties": false}),
            "\"x\"",
        ),
        (json!({"type": "strin"}), "unknown type"),
        (json!(false), "matches nothing"),
        (json!({"anyOf": []}), "empty"),
        (
            json!({"$defs": {"a": {"$ref": "#/$defs/a"}}, "$ref": "#/$defs/a"}),
            "itself",
        ),
        (
            json!({"type": "object", "anyOf": [{"required": ["a"]}]}),
            "next to",
        ),
    ];
    for (schema, needle) in cases {
        let message = err(schema.clone()).to_string();
        assert!(message.contains(needle), "{schema}: {message}");
    }
}

#[test]
fn supported_schemas_compile() {
    let schemas = [
        json!(true),
        json!({}),
        json!({"type": ["string", "null"], "maxLength": 4, "description": "annotations are ignored"}),
        json!({"oneOf": [{"type": "string"}, {"type": "integer"}, {"type": "null"}]}),
        json!({"type": "object", "required": ["x"]}),
        json!({"$schema": "https://json-schema.org/draft/2020-12/schema", "definitions": {"p": {"type": "integer"}}, "type": "array", "items": {"$ref": "#/definitions/p"}}),
        json!({"$defs": {"t": {"type": "object", "properties": {"kids": {"type": "array", "items": {"$ref": "#/$defs/t"}}}}}, "$ref": "#/$defs/t"}),
        json!({"type": "object", "properties": {"a/b~c": {"const": 1}}}),
    ];
    for schema in schemas {
        if let Err(e) = Grammar::from_schema(&schema) {
            panic!("{schema}: {e}");
        }
    }
}

#[test]
fn object_properties_keep_declaration_order_and_requirements() {
    let g = Grammar::from_schema(&json!({
        "type": "object",
        "properties": {"z": {"type": "string"}, "a": {"type": "integer"}, "m": {"type": "boolean"}},
        "required": ["a"]
    }))
    .unwrap();
    let Node::Object(o) = g.node(g.root) else {
        panic!("not an object: {:?}", g.node(g.root))
    };
    assert_eq!(o.props.len(), 3);
    // Sorted keys map back to declaration indices: "a" is 1, "m" 2, "z" 0.
    let sorted: Vec<(&[u8], u16)> = o.sorted_keys.iter().map(|(k, i)| (&k[..], *i)).collect();
    assert_eq!(
        sorted,
        [(&b"\"a\""[..], 1), (&b"\"m\""[..], 2), (&b"\"z\""[..], 0)]
    );
    assert_eq!(o.required_from, [1, 1, 3, 3]);
}

#[test]
fn enum_values_are_filtered_by_type_and_serialised_compactly() {
    let g =
        Grammar::from_schema(&json!({"type": "string", "enum": ["b", 1, "a", "b"], "const": "b"}))
            .unwrap();
    match g.node(g.root) {
        Node::Literals(values) => assert_eq!(values, &[b"\"b\""[..].into()]),
        other => panic!("{other:?}"),
    }
    let g = Grammar::from_schema(&json!({"enum": [{"k": [1, 2]}, "é"]})).unwrap();
    match g.node(g.root) {
        Node::Literals(values) => {
            let texts: Vec<&str> = values
                .iter()
                .map(|v| std::str::from_utf8(v).unwrap())
                .collect();
            assert_eq!(texts, ["\"é\"", "{\"k\":[1,2]}"]);
        }
        other => panic!("{other:?}"),
    }
}
