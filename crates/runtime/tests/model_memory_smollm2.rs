//! SmolLM2-135M: the footprint estimate against measured resident memory, and the
//! memory given back by an unload.

mod common;

#[test]
fn smollm2_estimate_within_15_percent_of_rss_and_unload_frees_it() {
    common::memory::estimate_matches_rss_then_unload_frees_it(
        tern_testkit::TestModel::SmolLm2_135m,
    );
    common::memory::rerun_with_pinned_mmap_threshold(
        "smollm2_estimate_within_15_percent_of_rss_and_unload_frees_it",
    );
}
