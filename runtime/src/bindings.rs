//! Host bindings for the `agnes:connector@0.1.0` world, generated once from `wit/`.

wasmtime::component::bindgen!({
    world: "connector",
    path: "../wit/connector",
    imports: { default: trappable | tracing },
    exports: { default: async },
});
