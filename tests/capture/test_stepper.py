"""The capture layer's building blocks, unit by unit: stepper, task hook, identities."""

from __future__ import annotations

import asyncio
import contextvars
import sys
import threading
import types
from collections.abc import Generator
from typing import Any

import pytest

import asgitrace._support._log
from asgitrace import EventKind, Tracer
from asgitrace.capture._accel import Stepper, ref_of
from asgitrace.capture._context import CURRENT, task_ref, thread_ref
from asgitrace.capture._loopmon import LoopMonitor, sample_stack
from asgitrace.capture._recorder import Recorder
from asgitrace.capture._taskhook import install, monitor_of, uninstall
from asgitrace.capture._walk import AppCode, walk
from asgitrace.trace._events import TaskRef
from asgitrace.trace.codec import DECODERS, entered_fields, expand


@pytest.fixture(autouse=True)
def _fresh_failure_log(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(asgitrace._support._log, "_reported", set())


def recorder(limit: int = 100, **options: Any) -> Recorder:
    tracer = Tracer(max_events=limit, **options)
    scope = {"type": "http", "method": "GET", "path": "/x", "headers": []}
    return tracer.recorder(scope, None)


async def sleeper() -> str:
    await asyncio.sleep(0)
    return "done"


class TestStepperProtocol:
    async def test_drives_a_coroutine_through_send_and_next(self) -> None:
        step = Stepper(sleeper(), None, None)
        assert step.send(None) is None  # the bare yield of asyncio.sleep(0)
        with pytest.raises(StopIteration) as stop:
            next(step)
        assert stop.value.value == "done"

    async def test_is_awaitable_and_iterable(self) -> None:
        step = Stepper(sleeper(), None, None)
        assert iter(step) is step
        assert step.__await__() is step
        assert await step == "done"

    async def test_throw_in_both_forms_reaches_the_coroutine(self) -> None:
        async def catcher() -> str:
            try:
                await asyncio.sleep(0)
            except KeyError as exc:
                return f"caught {exc.args[0]}"
            return "not thrown"  # pragma: no cover

        step = Stepper(catcher(), None, None)
        step.send(None)
        with pytest.raises(StopIteration) as stop:
            step.throw(KeyError("k"))
        assert stop.value.value == "caught k"

        step = Stepper(catcher(), None, None)
        step.send(None)
        legacy = (
            pytest.warns(DeprecationWarning, match="signature of throw")
            if sys.version_info >= (3, 12)
            else _nothing()
        )
        with legacy, pytest.raises(StopIteration) as stop:
            step.throw(KeyError, KeyError("legacy"), None)
        assert stop.value.value == "caught legacy"

    async def test_close_closes_the_coroutine(self) -> None:
        coro = sleeper()
        step = Stepper(coro, None, None)
        step.send(None)
        step.close()
        assert coro.cr_frame is None

    async def test_introspection_is_the_wrapped_coroutines(self) -> None:
        coro = sleeper()
        step = Stepper(coro, None, None)
        assert step.cr_code is coro.cr_code
        assert step.cr_frame is coro.cr_frame
        assert step.cr_running is False
        assert step.cr_suspended is False
        assert step.__name__ == "sleeper"
        assert step.__qualname__ == "sleeper"
        assert step.cr_origin is coro.cr_origin
        assert repr(step) == repr(coro)
        step.send(None)
        assert step.cr_await is not None or step.cr_suspended
        step.close()

    def test_attribute_access_stays_specialized(self) -> None:
        # A class with `__getattr__` gets no specialized attribute access: every
        # `self.x` of every step would pay for it (measured: ~0.6 us per suspension).
        assert "__getattr__" not in vars(Stepper)

    def test_an_awaitable_without_frames_is_described_by_its_type(self) -> None:
        class Awaitable:
            def send(self, value: Any) -> Any:
                raise StopIteration(1)

        step = Stepper(Awaitable(), None, None)  # type: ignore[arg-type]
        assert step.cr_frame is None
        assert step.cr_code is None
        assert step.__name__ == "Awaitable"


class _nothing:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


class TestStepperRecording:
    async def test_a_child_stepper_records_spawn_suspension_and_end(self) -> None:
        rec = recorder()
        parent = TaskRef(99, "parent")
        task = asyncio.get_running_loop().create_task(
            Stepper(sleeper(), None, rec, parent=parent)  # type: ignore[arg-type]
        )
        assert await task == "done"
        # One compact record per suspension, read as its two events.
        assert [e[2] for e in rec.events] == ["spawned", "suspended", "resumed", "task_done"]
        kinds = [e[2] for e in expand(tuple(rec.events))]
        assert kinds == ["spawned", "awaiting", "yielded", "resumed", "task_done"]
        assert rec.events[0][3] != parent.id

    @pytest.mark.parametrize("after_response", [False, True])
    async def test_a_child_spawned_after_the_response_is_marked_so(
        self, after_response: bool
    ) -> None:
        rec = recorder()
        rec.response_done = after_response
        task = asyncio.get_running_loop().create_task(
            Stepper(sleeper(), None, rec, parent=TaskRef(99, "parent"))  # type: ignore[arg-type]
        )
        await task
        fields = DECODERS["spawned"](rec.events[0][5], None)
        late = fields.get("after_response", False)
        assert (fields["parent"], late) == (TaskRef(99, "parent"), after_response)

    async def test_a_failing_child_records_its_exception(self) -> None:
        async def boom() -> None:
            await asyncio.sleep(0)
            raise ValueError("x")

        rec = recorder()
        task = asyncio.get_running_loop().create_task(
            Stepper(boom(), None, rec, parent=TaskRef(1, "p"))  # type: ignore[arg-type]
        )
        with pytest.raises(ValueError, match="x"):
            await task
        fields = DECODERS["task_done"](rec.events[-1][5], None)
        assert fields == {"outcome": "failed", "exception": "ValueError"}

    async def test_events_past_the_cap_are_counted_not_stored(self) -> None:
        rec = recorder(limit=1)
        step = Stepper(sleeper(), None, rec, rec.task, request_task=True)
        rec.add(EventKind.RECEIVED, {})  # the one event that fits
        step.send(None)  # awaiting + yielded do not fit
        with pytest.raises(StopIteration):
            step.send(None)  # resumed does not fit either
        assert [e[2] for e in rec.events] == ["received"]
        assert rec.dropped == 3

    async def test_a_probe_error_disables_recording_but_not_the_coroutine(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        class Broken(LoopMonitor):
            def begin(self, ref: Any, rec: Any) -> bool:
                raise RuntimeError("begin")

        rec = recorder()
        step = Stepper(sleeper(), Broken(10**9), rec, rec.task, request_task=True)
        assert await step == "done"
        assert step.rec is None
        assert [r.getMessage() for r in caplog.records].count(
            "asgitrace: the coroutine stepper failed and was disabled; the app is unaffected"
        ) == 1

    async def test_an_error_while_recording_the_end_is_swallowed(self) -> None:
        class Broken(LoopMonitor):
            def end(self, opened: bool) -> None:
                raise RuntimeError("end")

        rec = recorder()
        step = Stepper(sleeper(), Broken(10**9), rec, rec.task, request_task=True)
        assert await step == "done"
        assert step.rec is None

    def test_the_entry_of_an_unknown_endpoint_is_only_marked_derived(self) -> None:
        raw = entered_fields(None, derived=True)
        assert DECODERS["entered"](raw, None) == {"derived": True}


class TestIdentities:
    async def test_task_refs_are_stable_and_never_reused(self) -> None:
        task = asyncio.current_task()
        assert task_ref(task) is task_ref(task)
        assert task_ref(None).name == "<no task>"
        assert task_ref(None).id != task_ref(None).id

    def test_threads_get_one_identity_each(self) -> None:
        mine = thread_ref()
        assert thread_ref() is mine
        other: list[TaskRef] = []
        worker = threading.Thread(target=lambda: other.append(thread_ref()), name="w-1")
        worker.start()
        worker.join()
        assert other[0].name == "w-1"
        assert other[0].id != mine.id

    async def test_ref_of_prefers_the_request_and_the_stepper_identities(self) -> None:
        rec = recorder()
        assert ref_of(None, rec).name == "<no task>"
        task = asyncio.current_task()
        rec.task_obj = task
        assert ref_of(task, rec) is rec.task
        rec.task_obj = None
        assert ref_of(task, rec) == task_ref(task)


class TestTaskHook:
    async def test_install_is_idempotent_and_a_stricter_threshold_wins(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            mon = install(loop, 200_000_000)
            assert monitor_of(loop) is mon
            assert install(loop, 300_000_000) is mon
            assert mon.threshold_ns == 200_000_000
            assert install(loop, 50_000_000) is mon
            assert mon.threshold_ns == 50_000_000
        finally:
            uninstall(loop)
        assert monitor_of(loop) is None
        uninstall(loop)  # nothing to remove: no error

    def test_the_task_name_fix_sends_create_task_through_the_factory_while_it_is_ours(
        self,
    ) -> None:
        """`_fix_task_names` runs only on 3.13.0-3.13.2 (whose create_task drops a name
        given to a custom factory): driven directly here, on any Python."""
        import asgitrace.capture._taskhook as hook

        loop = asyncio.new_event_loop()
        seen: list[dict[str, Any]] = []

        def factory(loop: Any, coro: Any, **kwargs: Any) -> Any:
            seen.append(kwargs)
            return asyncio.Task(coro, loop=loop, **kwargs)

        context = contextvars.copy_context()

        async def main() -> list[str]:
            named = loop.create_task(sleeper(), name="named")
            in_context = loop.create_task(sleeper(), context=context)
            await asyncio.gather(named, in_context)
            loop.set_task_factory(None)  # replaced: the fix stands aside
            plain = loop.create_task(sleeper(), name="plain")
            await plain
            return [named.get_name(), plain.get_name()]

        try:
            loop.set_task_factory(factory)
            hook._fix_task_names(loop, factory)
            assert loop.run_until_complete(main()) == ["named", "plain"]
        finally:
            loop.close()
        assert seen == [{}, {"name": "named"}, {"context": context}]

    def test_the_task_name_fix_leaves_a_loops_own_create_task_alone(self) -> None:
        import asgitrace.capture._taskhook as hook

        class OwnCreateTask(asyncio.SelectorEventLoop):
            def create_task(self, coro: Any, **kwargs: Any) -> Any:  # type: ignore[override]
                return super().create_task(coro, **kwargs)

        loop = OwnCreateTask()
        try:
            hook._fix_task_names(loop, lambda *a, **k: None)  # type: ignore[arg-type, return-value]
            assert "create_task" not in loop.__dict__
        finally:
            loop.close()

    def test_uninstall_removes_the_task_name_fix(self) -> None:
        import asgitrace.capture._taskhook as hook

        loop = asyncio.new_event_loop()
        try:
            install(loop, 100_000_000)
            hook._fix_task_names(loop, loop.get_task_factory())  # type: ignore[arg-type]
            assert "create_task" in loop.__dict__
            uninstall(loop)
            assert ("create_task" in loop.__dict__, loop.get_task_factory()) == (False, None)
        finally:
            loop.close()

    async def test_uninstall_restores_the_previous_factory(self) -> None:
        loop = asyncio.get_running_loop()

        def previous(loop: Any, coro: Any, **kwargs: Any) -> asyncio.Task[Any]:
            return asyncio.Task(coro, loop=loop, **kwargs)

        loop.set_task_factory(previous)
        try:
            install(loop, 10**8)
            assert loop.get_task_factory() is not previous
            uninstall(loop)
            assert loop.get_task_factory() is previous
        finally:
            loop.set_task_factory(None)

    async def test_tasks_of_a_bound_context_are_wrapped_and_others_are_not(self) -> None:
        loop = asyncio.get_running_loop()
        rec = recorder()
        try:
            install(loop, 10**9)
            plain = loop.create_task(sleeper())
            assert not isinstance(plain.get_coro(), Stepper)
            ctx = contextvars.copy_context()
            ctx.run(CURRENT.set, rec)
            bound = loop.create_task(sleeper(), context=ctx)
            assert isinstance(bound.get_coro(), Stepper)
            assert await asyncio.gather(plain, bound) == ["done", "done"]
        finally:
            uninstall(loop)
        assert rec.events[0][2] == "spawned"

    async def test_a_broken_hook_hands_the_task_over_unwrapped(
        self, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
    ) -> None:
        import asgitrace.capture._taskhook as hook

        def broken(*args: Any) -> Any:
            raise RuntimeError("hook bug")

        monkeypatch.setattr(hook, "_wrap", broken)
        loop = asyncio.get_running_loop()
        token = CURRENT.set(recorder())
        try:
            install(loop, 10**9)
            task = loop.create_task(sleeper())
            assert not isinstance(task.get_coro(), Stepper)
            assert await task == "done"
        finally:
            CURRENT.reset(token)
            uninstall(loop)
        assert "task hook failed" in caplog.text

    async def test_non_coroutines_and_steppers_are_not_wrapped_again(self) -> None:
        import asgitrace.capture._taskhook as hook

        rec = recorder()
        mon = LoopMonitor(10**9)
        token = CURRENT.set(rec)
        try:
            future_like = types.SimpleNamespace()
            assert hook._wrap(future_like, mon, None) is future_like
            step = Stepper(sleeper(), mon, rec)
            assert hook._wrap(step, mon, None) is step
            step.close()
        finally:
            CURRENT.reset(token)


class TestWalk:
    def test_generator_based_awaitables_are_walked(self) -> None:
        @types.coroutine
        def legacy() -> Generator[None, None, None]:
            yield

        async def outer() -> None:
            await legacy()

        coro = outer()
        coro.send(None)
        result = walk(coro, AppCode())
        assert result.app_code is legacy.__code__  # the innermost app frame
        assert result.app_obj is not coro
        coro.close()

    def test_a_rule_that_raises_means_library_code(self, caplog: pytest.LogCaptureFixture) -> None:
        def rule(filename: str) -> bool:
            raise RuntimeError("rule bug")

        assert AppCode(rule)(sleeper.__code__) is False
        assert "app_code rule failed" in caplog.text

    def test_sample_stack_skips_asgitrace_and_stops_at_the_limit(self) -> None:
        frame = sys._getframe()
        stack = sample_stack(frame, limit=2)
        assert len(stack) == 2
        assert stack[0][2] == "test_sample_stack_skips_asgitrace_and_stops_at_the_limit"
        assert sample_stack(None) == ()


@pytest.mark.skipif(sys.version_info < (3, 12), reason="sys.monitoring is 3.12+")
class TestMonitoringCallbacks:
    """The callbacks' bodies, called directly: coverage cannot see inside sys.monitoring."""

    def test_entry_and_return_are_recorded_once_per_request(self) -> None:
        import asgitrace.capture._entry as entry

        rec = recorder(watch=("value",))
        token = CURRENT.set(rec)
        try:
            entry._started(sleeper.__code__)
            entry._started(sleeper.__code__)  # a second call is not a second entry

            def returning(value: int) -> None:
                entry._returned(sleeper.__code__, value)

            def frame_holder() -> None:
                value = 7
                returning(value)

            frame_holder()
            frame_holder()
        finally:
            CURRENT.reset(token)
        kinds = [e[2] for e in rec.events]
        assert kinds == ["entered", "returned"]
        assert DECODERS["entered"](rec.events[0][5], None)["derived"] is False
        assert DECODERS["returned"](rec.events[1][5], None)["value"] == "7"

    def test_callbacks_do_nothing_outside_a_traced_request(self) -> None:
        import asgitrace.capture._entry as entry

        rec = recorder()  # a request exists, but this code runs outside it
        assert CURRENT.get() is None
        assert entry._started(sleeper.__code__) is None
        assert entry._returned(sleeper.__code__, 1) is None
        assert (rec.entered, rec.returned, rec.events) == (False, False, [])
        assert asgitrace._support._log._reported == set()

    def test_entry_in_a_worker_thread_names_the_thread(self) -> None:
        import asgitrace.capture._entry as entry

        rec = recorder()

        def in_thread() -> None:
            token = CURRENT.set(rec)
            try:
                entry._started(sleeper.__code__)
            finally:
                CURRENT.reset(token)

        worker = threading.Thread(target=in_thread, name="AnyIO worker thread")
        worker.start()
        worker.join()
        [entered] = rec.events
        assert entered[4] == "AnyIO worker thread"
        assert DECODERS["entered"](entered[5], None)["thread"] == "AnyIO worker thread"

    def test_an_endpoint_equal_to_one_watched_before_is_watched_too(self) -> None:
        # The same source compiled twice (a reloaded module, a test app rebuilt) gives
        # equal but distinct code objects: each needs its own events.
        import asgitrace.capture._entry as entry

        source = "async def endpoint():\n    return {'ok': True}\n"
        first: dict[str, Any] = {}
        second: dict[str, Any] = {}
        exec(compile(source, "<app>", "exec"), first)
        exec(compile(source, "<app>", "exec"), second)
        one, two = first["endpoint"].__code__, second["endpoint"].__code__
        assert one == two
        assert one is not two
        entry.watch([one])
        entry.watch([two])
        assert id(one) in entry._watched
        assert id(two) in entry._watched

    def test_every_tool_id_taken_leaves_entry_derived(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        import asgitrace.capture._entry as entry

        monkeypatch.setattr(entry, "_tool", None)
        monkeypatch.setattr(sys.monitoring, "get_tool", lambda tool: "someone else")

        async def fresh() -> None:
            return None

        entry.watch([fresh.__code__])
        assert id(fresh.__code__) not in entry._watched


@pytest.mark.parametrize(
    ("line", "target"),
    [
        ("await asyncio.sleep(1)", "asyncio.sleep(1)"),
        (
            "return list(await asyncio.gather(child(1), child(2)))",
            "asyncio.gather(child(1), child(2))",
        ),
        ('x = await f("a)", b)', 'f("a)", b)'),
        ('r = {"a": await g(1), "b": 2}', "g(1)"),
        ("for x in await it():", "it()"),
        ("no awaiting here", None),
    ],
)
def test_await_targets_end_where_the_expression_does(line: str, target: str | None) -> None:
    from asgitrace.trace._source import target_from_source

    assert target_from_source(line) == target


def test_watched_variables_named_like_a_task_ref_survive_a_round_trip() -> None:
    from asgitrace import Trace

    rec = recorder()
    rec.add(EventKind.AWAITING, {"target": "x", "watched": {"id": "1", "name": "'x'"}})
    rec.add(EventKind.SPAWNED, {"parent": TaskRef(4, "Task-4"), "coro": "c"})
    trace = rec.finish(EventKind.COMPLETED, {"status": 200})
    again = Trace.from_dict(trace.to_dict())
    assert again.to_dict() == trace.to_dict()
    assert again.events[0].get("watched") == {"id": "1", "name": "'x'"}
    assert again.events[1].get("parent") == TaskRef(4, "Task-4")


def test_the_same_await_gives_the_same_site_record_built_once() -> None:
    """`await_site` keeps one raw tuple per (code, line, leaf, cooperative)."""
    from asgitrace.capture._walk import Walk, await_site

    def site(line: int) -> tuple[object, ...]:
        w = Walk()
        w.app_code, w.app_line, w.leaf = sleeper.__code__, line, None
        return await_site(w, False, AppCode())

    assert site(3) is site(3)
    assert site(3) != site(4)
    assert DECODERS["awaiting"](site(3), {})["line"] == 3
