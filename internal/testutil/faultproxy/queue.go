package faultproxy

import (
	"sync"
	"time"
)

// maxQueued bounds the bytes waiting in one direction of one connection.
// The proxy terminates TCP on both sides, so with latency switched on this
// queue, not the endpoints' TCP windows, is the window of the emulated link:
// throughput is at most maxQueued per one-way delay (64 MiB per 50 ms is
// about 1.3 GB/s), which keeps the proxy from being the bottleneck it is
// meant to emulate. Memory is taken only as data actually waits.
const maxQueued = 64 << 20

// chunk is one read from a source, waiting to be written to the destination.
type chunk struct {
	buf *[]byte // from chunkPool; nil marks the end of stream
	n   int
	due time.Time // zero when there is no latency
}

func (c chunk) size() int { return c.n }

// queue is a FIFO of chunks bounded by bytes, with one producer (the reader
// of a direction) and one consumer (its writer). A mutex-guarded slice
// rather than a channel, so an idle connection does not pay for a large
// channel buffer and the bound can be in bytes.
type queue struct {
	mu     sync.Mutex
	items  []chunk
	head   int
	queued int // bytes in items[head:]

	ready chan struct{} // signalled after push; capacity 1
	room  chan struct{} // signalled after pop; capacity 1
}

func newQueue() *queue {
	return &queue{ready: make(chan struct{}, 1), room: make(chan struct{}, 1)}
}

// push appends c, waiting while the queue is full. It returns false if done
// is closed first.
func (q *queue) push(c chunk, done <-chan struct{}) bool {
	for {
		q.mu.Lock()
		if q.queued < maxQueued {
			if q.head > 0 && 2*q.head >= len(q.items) {
				// Reclaim the consumed front so a queue that never
				// drains completely does not grow forever.
				n := copy(q.items, q.items[q.head:])
				clear(q.items[n:])
				q.items, q.head = q.items[:n], 0
			}
			q.items = append(q.items, c)
			q.queued += c.size()
			q.mu.Unlock()
			signal(q.ready)
			return true
		}
		q.mu.Unlock()
		select {
		case <-q.room:
		case <-done:
			return false
		}
	}
}

// pop removes the oldest chunk, waiting while the queue is empty. It returns
// false if done is closed first.
func (q *queue) pop(done <-chan struct{}) (chunk, bool) {
	for {
		q.mu.Lock()
		if q.head < len(q.items) {
			c := q.items[q.head]
			q.items[q.head] = chunk{}
			q.head++
			q.queued -= c.size()
			q.mu.Unlock()
			signal(q.room)
			return c, true
		}
		q.mu.Unlock()
		select {
		case <-q.ready:
		case <-done:
			return chunk{}, false
		}
	}
}

// signal wakes the other side if it is not already due to wake.
func signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}
