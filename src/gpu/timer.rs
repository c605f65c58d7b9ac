//! Timestamps around one batch call's work, for the bench (`Backend::last_device_seconds`).

use super::context::Context;

/// Two timestamps bracketing the work recorded for one batch call (an empty compute pass
/// before, one after), resolved and copied out in the same submission.
#[derive(Debug)]
pub(super) struct Timer {
    queries: wgpu::QuerySet,
    resolved: wgpu::Buffer,
    pub(super) staging: wgpu::Buffer,
    pub(super) period_ns: f64,
    /// Whether the last recorded batch work carried the timestamps.
    pub(super) recorded: bool,
}

impl Timer {
    pub(super) fn new(ctx: &Context) -> Option<Timer> {
        if !ctx.has_timestamps() {
            return None;
        }
        let device = ctx.device();
        let buffer = |label, usage| {
            device.create_buffer(&wgpu::BufferDescriptor {
                label: Some(label),
                size: 16,
                usage,
                mapped_at_creation: false,
            })
        };
        Some(Timer {
            queries: device.create_query_set(&wgpu::QuerySetDescriptor {
                label: Some("batch work timestamps"),
                ty: wgpu::QueryType::Timestamp,
                count: 2,
            }),
            resolved: buffer(
                "timestamps resolved",
                wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
            ),
            staging: buffer(
                "timestamps read-back",
                wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            ),
            period_ns: f64::from(ctx.queue().get_timestamp_period()),
            recorded: false,
        })
    }

    /// An empty compute pass that writes timestamp `index` at its beginning (0) or end (1).
    pub(super) fn mark(&self, encoder: &mut wgpu::CommandEncoder, index: u32) {
        let _pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
            label: Some("timestamp"),
            timestamp_writes: Some(wgpu::ComputePassTimestampWrites {
                query_set: &self.queries,
                beginning_of_pass_write_index: (index == 0).then_some(0),
                end_of_pass_write_index: (index == 1).then_some(1),
            }),
        });
    }

    pub(super) fn finish(&self, encoder: &mut wgpu::CommandEncoder) {
        self.mark(encoder, 1);
        encoder.resolve_query_set(&self.queries, 0..2, &self.resolved, 0);
        encoder.copy_buffer_to_buffer(&self.resolved, 0, &self.staging, 0, 16);
    }
}
