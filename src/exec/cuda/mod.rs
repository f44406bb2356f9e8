//! The CUDA backend: the `.cu` kernels of this folder, compiled at run time by NVRTC, driven by
//! [`pipeline`] through cudarc's driver API. See DESIGN.md section 7.

pub mod args;
pub mod pipeline;

#[cfg(test)]
mod host;
#[cfg(test)]
mod host_tests;
