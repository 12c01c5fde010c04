//! Filter and cursor parsing: any query string, split as the server splits it. Must never
//! panic; a page cursor the server issues must decode to what it encodes.

#![no_main]

use libfuzzer_sys::fuzz_target;
use sealtrail_core::query::{PageRequest, StatsRequest};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let pairs: Vec<(&str, &str)> = text
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| p.split_once('=').unwrap_or((p, "")))
        .collect();
    if let Ok(request) = PageRequest::from_params(pairs.iter().copied()) {
        if let Some(cursor) = &request.after {
            let encoded = cursor.encode(request.order);
            let decoded = sealtrail_core::query::PageCursor::decode(&encoded, request.order)
                .expect("an encoded cursor decodes");
            assert_eq!(&decoded, cursor);
        }
    }
    let _ = StatsRequest::from_params(pairs.iter().copied());
});
