/**
 * @file parallel.hpp
 * How kernels spread independent work over threads, without owning any.
 *
 * An engine already has a thread pool: it passes a `parallel_executor` whose `run`
 * hands tasks to it. Kernels split their work into tasks that share nothing but
 * read-only inputs (a KV head, or a block of query positions of one head), each on a
 * per-worker scratch slot, and compute every task the same way whatever thread runs
 * it: the output is bit-identical for any number of threads.
 *
 * `thread_pool` is a small default built on std::thread, for the tools and benchmarks.
 */
#ifndef DELTAATTN_PARALLEL_HPP
#define DELTAATTN_PARALLEL_HPP

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <exception>
#include <functional>
#include <mutex>
#include <thread>
#include <type_traits>
#include <vector>

namespace deltaattn
{
    /**
     * A task body: `task` in [0, tasks), `worker` in [0, workers) names a scratch slot
     * that no other task uses at the same time.
     *
     * A non-owning reference to the caller's callable, valid for the duration of the
     * `run` it is passed to (do not keep it). Unlike std::function it never allocates:
     * the caches call executors between steps that must not fail halfway.
     */
    class task_function
    {
    public:
        template <class F, class = std::enable_if_t<!std::is_same<std::decay_t<F>, task_function>::value>>
        task_function(F const& body) noexcept  // NOLINT: implicit, like std::function
            : m_body(&body), m_call([](void const* b, std::size_t task, std::size_t worker) { (*static_cast<F const*>(b))(task, worker); })
        {
        }

        void operator()(std::size_t task, std::size_t worker) const { m_call(m_body, task, worker); }

    private:
        void const* m_body;
        void (*m_call)(void const*, std::size_t, std::size_t);
    };

    /**
     * `run(tasks, fn)` calls `fn(task, worker)` exactly once for every task and returns
     * when all have finished; no two concurrent calls share a worker index, and every
     * worker index is below `workers`. An empty `run` means "on the calling thread".
     */
    struct parallel_executor
    {
        std::size_t workers = 1;
        std::function<void(std::size_t tasks, task_function const& fn)> run;

        void operator()(std::size_t tasks, task_function const& fn) const
        {
            if (run && workers > 1 && tasks > 1)
                run(tasks, fn);
            else
                for (std::size_t t = 0; t < tasks; ++t)
                    fn(t, 0);
        }
    };

    /**
     * A fixed set of std::threads taking tasks from a shared counter. The calling
     * thread works too, as worker 0. One `run` at a time (it is not reentrant).
     */
    class thread_pool
    {
    public:
        /// `threads` workers in all, the caller included (0: std::thread::hardware_concurrency()).
        explicit thread_pool(std::size_t threads = 0)
        {
            if (threads == 0)
                threads = std::max(1u, std::thread::hardware_concurrency());
            for (std::size_t w = 1; w < threads; ++w)
                m_threads.emplace_back([this, w] { serve(w); });
        }

        thread_pool(thread_pool const&) = delete;
        thread_pool& operator=(thread_pool const&) = delete;

        ~thread_pool()
        {
            {
                std::lock_guard<std::mutex> lock(m_mutex);
                m_stop = true;
            }
            m_wake.notify_all();
            for (auto& t : m_threads)
                t.join();
        }

        std::size_t size() const noexcept { return m_threads.size() + 1; }

        /// Runs the tasks; rethrows the first exception a task threw, after all finished.
        void run(std::size_t tasks, task_function const& fn)
        {
            {
                std::lock_guard<std::mutex> lock(m_mutex);
                m_fn = &fn;
                m_tasks = tasks;
                m_next = 0;
                m_busy = m_threads.size();
                m_error = nullptr;
                ++m_generation;
            }
            m_wake.notify_all();
            work(0);
            std::unique_lock<std::mutex> lock(m_mutex);
            m_done.wait(lock, [this] { return m_busy == 0; });
            m_fn = nullptr;
            if (m_error)
                std::rethrow_exception(m_error);
        }

        /// An executor that runs on this pool.
        parallel_executor executor()
        {
            return {size(), [this](std::size_t tasks, task_function const& fn) { run(tasks, fn); }};
        }

    private:
        void work(std::size_t worker)
        {
            for (std::size_t t; (t = m_next.fetch_add(1)) < m_tasks;)
            {
                try
                {
                    (*m_fn)(t, worker);
                }
                catch (...)
                {
                    std::lock_guard<std::mutex> lock(m_mutex);
                    if (!m_error)
                        m_error = std::current_exception();
                }
            }
        }

        void serve(std::size_t worker)
        {
            std::size_t seen = 0;
            for (;;)
            {
                {
                    std::unique_lock<std::mutex> lock(m_mutex);
                    m_wake.wait(lock, [&] { return m_stop || m_generation != seen; });
                    if (m_stop)
                        return;
                    seen = m_generation;
                }
                work(worker);
                {
                    std::lock_guard<std::mutex> lock(m_mutex);
                    --m_busy;
                }
                m_done.notify_one();
            }
        }

        std::vector<std::thread> m_threads;
        std::mutex m_mutex;
        std::condition_variable m_wake, m_done;
        task_function const* m_fn = nullptr;
        std::size_t m_tasks = 0, m_busy = 0, m_generation = 0;
        std::atomic<std::size_t> m_next{0};
        std::exception_ptr m_error;
        bool m_stop = false;
    };
}  // namespace deltaattn

#endif  // DELTAATTN_PARALLEL_HPP
