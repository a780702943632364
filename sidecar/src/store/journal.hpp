// Durable append-only journal with group commit, plus snapshots.
//
// Files in the data directory:
//   snapshot          full state as of the start of journal.<gen>
//   journal.<gen>     entries appended after that snapshot, in order
// Frames are [u32 length][u32 crc32c][payload], little endian. A torn tail
// (crash mid-write) is detected by length/CRC and truncated on open.
//
// append() hands entries to a writer thread which writes everything queued
// with one write() and one fdatasync(), then calls each batch's callback:
// a caller acknowledges only after its callback reports durability.
#pragma once

#include "store/crc32c.hpp"

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace llm {

class Journal {
public:
  using Done = std::function<void(bool durable)>;

  struct Stats {
    std::uint64_t fsyncs = 0;
    std::uint64_t fsync_ns = 0; // total time spent in fdatasync
    std::uint64_t entries = 0;  // appended since start
    std::uint64_t bytes = 0;    // size of the current journal file
    std::uint64_t queued = 0;   // entries waiting for the writer
    std::uint64_t generation = 0;
    bool failed = false;
  };

  // Creates the directory if needed. Throws std::runtime_error.
  explicit Journal(std::string dir);
  ~Journal();
  Journal(const Journal &) = delete;
  Journal &operator=(const Journal &) = delete;

  // Calls fn for every snapshot entry, then every journal entry, in
  // order; truncates a torn tail. Call once, before start().
  void replay(const std::function<void(std::string_view)> &fn);
  void start();
  // Flushes everything queued, then stops the writer.
  void stop();

  void append(std::vector<std::string> entries, Done done);
  // The same for count entries already framed into one buffer (with
  // begin_frame() + the payload + end_frame()), written as is.
  void append_frames(std::string frames, std::size_t count, Done done);

  // Framing in place: begin_frame() reserves the header of a frame at
  // the end of out and returns its offset; append the payload to out,
  // then end_frame() fills in its length and CRC.
  static std::size_t begin_frame(std::string &out);
  static void end_frame(std::string &out, std::size_t at);
  // Completes once everything appended before it is durable.
  void barrier(Done done) { append({}, std::move(done)); }

  // Starts a new journal file after what is queued now and returns its
  // generation; the state a caller holds at this point is what a
  // snapshot of that generation must contain.
  std::uint64_t rotate();
  // Writes the snapshot atomically (tmp + fsync + rename), then deletes
  // the journals it covers. Returns false and sets err on failure.
  bool write_snapshot(std::uint64_t gen,
                      const std::vector<std::string> &entries,
                      std::string &err);

  Stats stats() const;
  const std::string &dir() const { return m_dir; }

private:
  struct Item {
    std::vector<std::string> entries;
    Done done;
    std::string frames; // pre-framed entries
    std::size_t framed = 0;
    bool rotate = false;
    std::uint64_t gen = 0;
  };

  // queues an item of count entries for the writer, or fails its done at
  // once when the journal is stopped or failed
  void enqueue(Item it, std::size_t count);
  void run();
  bool open_current(std::uint64_t gen, std::string &err);
  std::string journal_path(std::uint64_t gen) const;

  std::string m_dir;
  int m_fd = -1;
  std::uint64_t m_gen = 0;      // generation being written (writer)
  std::uint64_t m_next_gen = 0; // last generation handed out (queue)
  std::uint64_t m_snapshot_gen = 0;

  mutable std::mutex m_mu;
  std::condition_variable m_cv;
  std::condition_variable m_rotated;
  std::vector<Item> m_queue;
  std::uint64_t m_queued_entries = 0;
  bool m_stop = false;
  std::thread m_thread;

  std::atomic<std::uint64_t> m_fsyncs{0};
  std::atomic<std::uint64_t> m_fsync_ns{0};
  std::atomic<std::uint64_t> m_entries{0};
  std::atomic<std::uint64_t> m_bytes{0};
  std::atomic<std::uint64_t> m_written_gen{0};
  std::atomic<bool> m_failed{false};
};

// mkdir -p; false with errno set on failure.
bool make_dirs(const std::string &path, unsigned mode = 0750);

} // namespace llm
