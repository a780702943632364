#include "store/journal.hpp"

#include "log.hpp"

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <dirent.h>
#include <fcntl.h>
#include <stdexcept>
#include <sys/stat.h>
#include <unistd.h>

namespace llm {

namespace {

void put_u32(std::string &out, std::uint32_t v) {
  for (int i = 0; i < 4; ++i) {
    out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
  }
}

std::uint32_t get_u32(const unsigned char *p) {
  return p[0] | (p[1] << 8) | (p[2] << 16) |
         (static_cast<std::uint32_t>(p[3]) << 24);
}

void frame(std::string &out, std::string_view payload) {
  put_u32(out, static_cast<std::uint32_t>(payload.size()));
  put_u32(out, crc32c(payload.data(), payload.size()));
  out.append(payload);
}

std::string sys_error(const std::string &what, const std::string &path) {
  return what + " " + path + ": " + std::strerror(errno);
}

bool read_all(const std::string &path, std::string &out) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    return false;
  }
  char buf[1 << 16];
  ssize_t n;
  while ((n = ::read(fd, buf, sizeof buf)) > 0) {
    out.append(buf, static_cast<std::size_t>(n));
  }
  ::close(fd);
  return n == 0;
}

// Walks frames; returns the offset after the last valid one.
std::size_t scan(const std::string &data,
                 const std::function<void(std::string_view)> &fn) {
  std::size_t off = 0;
  const auto *p = reinterpret_cast<const unsigned char *>(data.data());
  while (off + 8 <= data.size()) {
    const std::uint32_t len = get_u32(p + off);
    const std::uint32_t crc = get_u32(p + off + 4);
    if (off + 8 + len > data.size() ||
        crc32c(data.data() + off + 8, len) != crc) {
      break;
    }
    fn(std::string_view(data.data() + off + 8, len));
    off += 8 + len;
  }
  return off;
}

bool fsync_dir(const std::string &dir) {
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) {
    return false;
  }
  const bool ok = ::fsync(fd) == 0;
  ::close(fd);
  return ok;
}

} // namespace

bool make_dirs(const std::string &path, unsigned mode) {
  for (std::size_t i = 1; i <= path.size(); ++i) {
    if (i == path.size() || path[i] == '/') {
      const std::string part = path.substr(0, i);
      if (::mkdir(part.c_str(), mode) != 0 && errno != EEXIST) {
        return false;
      }
    }
  }
  return true;
}

Journal::Journal(std::string dir) : m_dir(std::move(dir)) {
  if (!make_dirs(m_dir)) {
    throw std::runtime_error(sys_error("ledger: cannot create", m_dir));
  }
  if (::access(m_dir.c_str(), W_OK) != 0) {
    throw std::runtime_error(sys_error("ledger: cannot write", m_dir));
  }
}

Journal::~Journal() {
  stop();
  if (m_fd >= 0) {
    ::close(m_fd);
  }
}

std::string Journal::journal_path(std::uint64_t gen) const {
  char name[40];
  std::snprintf(name, sizeof name, "/journal.%012llu",
                static_cast<unsigned long long>(gen));
  return m_dir + name;
}

void Journal::replay(const std::function<void(std::string_view)> &fn) {
  std::string snap;
  const std::string snap_path = m_dir + "/snapshot";
  if (read_all(snap_path, snap)) {
    bool complete = false;
    bool header = false;
    std::vector<std::string_view> entries;
    scan(snap, [&](std::string_view e) {
      if (!header && !e.empty() && e[0] == 'H') {
        header = true;
        // "H\t<gen>"
        m_snapshot_gen =
            std::strtoull(std::string(e.substr(2)).c_str(), nullptr, 10);
      }
      if (e == "E") {
        complete = true;
      }
      entries.push_back(e);
    });
    if (!header || !complete) {
      throw std::runtime_error("ledger: snapshot " + snap_path +
                               " is incomplete or corrupt; restore it "
                               "from a backup or move it away");
    }
    for (std::string_view e : entries) {
      fn(e);
    }
  }
  // Journals from the snapshot's generation on, in order.
  std::vector<std::uint64_t> gens;
  if (DIR *d = ::opendir(m_dir.c_str())) {
    while (dirent *de = ::readdir(d)) {
      unsigned long long g;
      char tail;
      if (std::sscanf(de->d_name, "journal.%llu%c", &g, &tail) == 1 &&
          g >= m_snapshot_gen) {
        gens.push_back(g);
      }
    }
    ::closedir(d);
  }
  std::sort(gens.begin(), gens.end());
  for (std::size_t i = 0; i < gens.size(); ++i) {
    std::string data;
    const std::string path = journal_path(gens[i]);
    if (!read_all(path, data)) {
      throw std::runtime_error(sys_error("ledger: cannot read", path));
    }
    const std::size_t good = scan(data, fn);
    if (good != data.size()) {
      log_warn("ledger: " + path + ": dropping " +
               std::to_string(data.size() - good) +
               " bytes of torn tail at offset " + std::to_string(good));
      if (::truncate(path.c_str(), static_cast<off_t>(good)) != 0) {
        throw std::runtime_error(sys_error("ledger: truncate", path));
      }
    }
  }
  m_gen = gens.empty() ? m_snapshot_gen : gens.back();
  m_next_gen = m_gen;
}

bool Journal::open_current(std::uint64_t gen, std::string &err) {
  const std::string path = journal_path(gen);
  const int fd =
      ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
  if (fd < 0) {
    err = sys_error("cannot open", path);
    return false;
  }
  if (m_fd >= 0) {
    ::close(m_fd);
  }
  m_fd = fd;
  struct stat st {};
  ::fstat(fd, &st);
  m_bytes = static_cast<std::uint64_t>(st.st_size);
  m_gen = gen;
  m_written_gen = gen;
  fsync_dir(m_dir);
  return true;
}

void Journal::start() {
  std::string err;
  if (!open_current(m_gen, err)) {
    throw std::runtime_error("ledger: " + err);
  }
  m_thread = std::thread([this] { run(); });
}

void Journal::stop() {
  {
    std::lock_guard lk(m_mu);
    if (m_stop) {
      return;
    }
    m_stop = true;
  }
  m_cv.notify_all();
  if (m_thread.joinable()) {
    m_thread.join();
  }
}

void Journal::append(std::vector<std::string> entries, Done done) {
  Item it;
  const std::size_t count = entries.size();
  it.entries = std::move(entries);
  it.done = std::move(done);
  enqueue(std::move(it), count);
}

void Journal::append_frames(std::string frames, std::size_t count,
                            Done done) {
  Item it;
  it.frames = std::move(frames);
  it.framed = count;
  it.done = std::move(done);
  enqueue(std::move(it), count);
}

void Journal::enqueue(Item it, std::size_t count) {
  {
    std::lock_guard lk(m_mu);
    if (!m_stop && !m_failed) {
      m_queued_entries += count;
      m_queue.push_back(std::move(it));
      m_cv.notify_one();
      return;
    }
  }
  if (it.done) {
    it.done(false);
  }
}

std::size_t Journal::begin_frame(std::string &out) {
  const std::size_t at = out.size();
  out.append(8, '\0');
  return at;
}

void Journal::end_frame(std::string &out, std::size_t at) {
  const std::size_t len = out.size() - at - 8;
  const std::uint32_t crc = crc32c(out.data() + at + 8, len);
  for (int i = 0; i < 4; ++i) {
    out[at + i] = static_cast<char>((len >> (8 * i)) & 0xff);
    out[at + 4 + i] = static_cast<char>((crc >> (8 * i)) & 0xff);
  }
}

std::uint64_t Journal::rotate() {
  std::lock_guard lk(m_mu);
  const std::uint64_t gen = ++m_next_gen;
  Item it;
  it.rotate = true;
  it.gen = gen;
  m_queue.push_back(std::move(it));
  m_cv.notify_one();
  return gen;
}

void Journal::run() {
  std::vector<Item> batch;
  std::string buf;
  std::unique_lock lk(m_mu);
  for (;;) {
    m_cv.wait(lk, [&] { return !m_queue.empty() || m_stop; });
    if (m_queue.empty() && m_stop) {
      break;
    }
    batch.swap(m_queue);
    m_queued_entries = 0;
    lk.unlock();

    bool ok = !m_failed;
    std::size_t done_upto = 0; // callbacks already completed
    auto flush = [&](std::size_t upto) {
      if (ok && !buf.empty()) {
        const char *p = buf.data();
        std::size_t left = buf.size();
        while (left > 0) {
          const ssize_t n = ::write(m_fd, p, left);
          if (n < 0 && errno == EINTR) {
            continue;
          }
          if (n <= 0) {
            log_error(sys_error("ledger: write failed:", journal_path(m_gen)));
            ok = false;
            break;
          }
          p += n;
          left -= static_cast<std::size_t>(n);
        }
        m_bytes += buf.size();
      }
      if (ok && (!buf.empty() || upto > done_upto)) {
        const auto t0 = std::chrono::steady_clock::now();
        if (::fdatasync(m_fd) != 0) {
          log_error(
              sys_error("ledger: fdatasync failed:", journal_path(m_gen)));
          ok = false;
        }
        m_fsync_ns += static_cast<std::uint64_t>(
            std::chrono::duration_cast<std::chrono::nanoseconds>(
                std::chrono::steady_clock::now() - t0)
                .count());
        ++m_fsyncs;
      }
      buf.clear();
      if (!ok) {
        m_failed = true;
      }
      for (; done_upto < upto; ++done_upto) {
        if (batch[done_upto].done) {
          batch[done_upto].done(ok);
        }
      }
    };
    for (std::size_t i = 0; i < batch.size(); ++i) {
      Item &it = batch[i];
      if (it.rotate) {
        flush(i);
        std::string err;
        if (ok && !open_current(it.gen, err)) {
          log_error("ledger: " + err);
          ok = false;
          m_failed = true;
        }
        done_upto = i + 1;
        { std::lock_guard g(m_mu); }
        m_rotated.notify_all();
        continue;
      }
      for (const std::string &e : it.entries) {
        frame(buf, e);
      }
      if (buf.empty() && !it.frames.empty()) {
        buf.swap(it.frames); // no copy for the first pre-framed batch
      } else {
        buf.append(it.frames);
      }
      m_entries += it.entries.size() + it.framed;
    }
    flush(batch.size());
    batch.clear();
    lk.lock();
  }
}

bool Journal::write_snapshot(std::uint64_t gen,
                             const std::vector<std::string> &entries,
                             std::string &err) {
  {
    // The journal of this generation must exist before older ones go.
    std::unique_lock lk(m_mu);
    m_rotated.wait(
        lk, [&] { return m_written_gen.load() >= gen || m_failed || m_stop; });
    if (m_written_gen.load() < gen) {
      err = "journal writer stopped before rotation";
      return false;
    }
  }
  const std::string tmp = m_dir + "/snapshot.tmp";
  const int fd =
      ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
  if (fd < 0) {
    err = sys_error("cannot create", tmp);
    return false;
  }
  std::string buf;
  frame(buf, "H\t" + std::to_string(gen));
  bool ok = true;
  auto drain = [&] {
    const char *p = buf.data();
    std::size_t left = buf.size();
    while (ok && left > 0) {
      const ssize_t n = ::write(fd, p, left);
      if (n < 0 && errno == EINTR) {
        continue;
      }
      if (n <= 0) {
        ok = false;
        break;
      }
      p += n;
      left -= static_cast<std::size_t>(n);
    }
    buf.clear();
  };
  for (const std::string &e : entries) {
    frame(buf, e);
    if (buf.size() > (1 << 20)) {
      drain();
    }
  }
  frame(buf, "E");
  drain();
  ok = ok && ::fsync(fd) == 0;
  ::close(fd);
  if (!ok) {
    err = sys_error("cannot write", tmp);
    ::unlink(tmp.c_str());
    return false;
  }
  if (::rename(tmp.c_str(), (m_dir + "/snapshot").c_str()) != 0 ||
      !fsync_dir(m_dir)) {
    err = sys_error("cannot install snapshot in", m_dir);
    return false;
  }
  // Journals before this generation are covered by the snapshot.
  if (DIR *d = ::opendir(m_dir.c_str())) {
    while (dirent *de = ::readdir(d)) {
      unsigned long long g;
      char tail;
      if (std::sscanf(de->d_name, "journal.%llu%c", &g, &tail) == 1 &&
          g < gen) {
        ::unlink((m_dir + "/" + de->d_name).c_str());
      }
    }
    ::closedir(d);
  }
  return true;
}

Journal::Stats Journal::stats() const {
  Stats s;
  s.fsyncs = m_fsyncs;
  s.fsync_ns = m_fsync_ns;
  s.entries = m_entries;
  s.bytes = m_bytes;
  s.generation = m_written_gen;
  s.failed = m_failed;
  std::lock_guard lk(m_mu);
  s.queued = m_queued_entries;
  return s;
}

} // namespace llm
