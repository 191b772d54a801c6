//! The browser entry point: hydrates the dashboard's islands (the interactive parts of the
//! server-rendered pages). Leptos's island script calls `hydrate`, then the `#[island]`
//! functions that `app` exports, one per island on the page.

// The islands' hydration functions live in `app`: link it.
use app as _;

#[wasm_bindgen::prelude::wasm_bindgen]
pub fn hydrate() {
    console_error_panic_hook::set_once();
    leptos::mount::hydrate_islands();
    // The islands hydrate right after this returns, each at once (none is lazy), in the
    // same task; a timer fires after them. Tests and scripts wait for this mark.
    leptos::prelude::set_timeout(
        || {
            if let Some(body) = leptos::prelude::document().body() {
                let _ = body.set_attribute("data-hydrated", "true");
            }
        },
        std::time::Duration::ZERO,
    );
}
