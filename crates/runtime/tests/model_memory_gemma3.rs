//! Gemma 3 270M: the footprint estimate against measured resident memory, and the
//! memory given back by an unload.

mod common;

#[test]
fn gemma3_estimate_within_15_percent_of_rss_and_unload_frees_it() {
    common::memory::estimate_matches_rss_then_unload_frees_it(tern_testkit::TestModel::Gemma3_270m);
    common::memory::rerun_with_pinned_mmap_threshold(
        "gemma3_estimate_within_15_percent_of_rss_and_unload_frees_it",
    );
}
