//! Host bindings for the connector worlds the host serves side by side, generated from
//! `wit/`: `agnes:connector@0.1.0` ([`v1`]) and `agnes:connector@0.2.0` ([`v2`]). A
//! component is instantiated as the world whose `source` interface it exports.

/// `agnes:connector@0.1.0`: spec, check, discover, read.
pub mod v1 {
    wasmtime::component::bindgen!({
        world: "connector",
        path: "../wit/connector",
        imports: { default: trappable | tracing },
        exports: { default: async },
    });
}

/// `agnes:connector@0.2.0`: 0.1.0 plus estimate, query, capabilities and database
/// connections the host authenticates.
pub mod v2 {
    wasmtime::component::bindgen!({
        world: "connector",
        path: "../wit/connector-0.2",
        imports: {
            "agnes:connector/database.connect": async | trappable | tracing,
            "agnes:connector/database.[method]connection.read": async | trappable,
            "agnes:connector/database.[method]connection.write": async | trappable,
            "agnes:connector/database.[drop]connection": trappable,
            default: trappable | tracing,
        },
        exports: { default: async },
        with: {
            "agnes:connector/database.connection": crate::host::database::Connection,
        },
    });
}

pub use v1::*;

/// The world an exported `source` interface name belongs to.
pub(crate) const V1_SOURCE: &str = "agnes:connector/source@0.1.0";
pub(crate) const V2_SOURCE: &str = "agnes:connector/source@0.2.0";
