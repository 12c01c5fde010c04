// A fixed-capacity FIFO of events: a preallocated ring, so pushing an event on the hot path
// allocates nothing and taking a batch is one slice-like copy. Its capacity is the
// client's `maxQueue`, which is the memory bound the overflow policy protects.

export class RingQueue {
  #slots;
  #head = 0;
  #length = 0;

  /** @param {number} capacity the most items it holds */
  constructor(capacity) {
    if (!Number.isInteger(capacity) || capacity < 1) {
      throw new RangeError(`queue capacity must be a positive integer, not ${capacity}`);
    }
    this.#slots = new Array(capacity).fill(undefined);
  }

  /** How many items are queued. */
  get length() {
    return this.#length;
  }

  /** The most items it holds. */
  get capacity() {
    return this.#slots.length;
  }

  /** Whether another push would exceed the capacity. */
  get full() {
    return this.#length === this.#slots.length;
  }

  /** The oldest item, or undefined when empty. */
  peek() {
    return this.#length === 0 ? undefined : this.#slots[this.#head];
  }

  /**
   * Appends an item; the caller checks `full` first (the overflow policy decides what a
   * full queue means, not the queue).
   */
  push(item) {
    const slots = this.#slots;
    let index = this.#head + this.#length;
    if (index >= slots.length) index -= slots.length;
    slots[index] = item;
    this.#length++;
  }

  /**
   * Removes and returns up to `count` of the oldest items, oldest first.
   * @param {number} count
   * @returns {any[]}
   */
  take(count) {
    const n = Math.min(count, this.#length);
    const out = new Array(n);
    const slots = this.#slots;
    let index = this.#head;
    for (let i = 0; i < n; i++) {
      out[i] = slots[index];
      slots[index] = undefined; // let the event be collected once delivered
      if (++index === slots.length) index = 0;
    }
    this.#head = index;
    this.#length -= n;
    return out;
  }
}
