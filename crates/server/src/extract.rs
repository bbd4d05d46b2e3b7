//! A JSON body extractor whose rejections are [`ApiError`]s, so a malformed, mistyped or
//! oversized body gets the same error shape as every other failure (axum
//! `examples/error-handling`, `AppJson`).

use axum::extract::FromRequest;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::error::ApiError;

/// `axum::Json`, with [`ApiError`] as its rejection.
#[derive(Debug, Clone, Copy, Default, FromRequest)]
#[from_request(via(axum::Json), rejection(ApiError))]
pub struct Json<T>(pub T);

impl<T: Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}
