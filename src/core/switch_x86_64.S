// The machine-level context switch for x86-64 (System V ABI, ELF); elsewhere context.cpp
// falls back to Boost.Context's jump_fcontext and make_fcontext.
//
// A suspended context is the stack pointer of this frame, on its own stack:
//
//     0x00 r12   0x08 r13   0x10 r14   0x18 r15   0x20 rbx   0x28 rbp   0x30 return address
//
// Only the callee-saved general registers and the stack and instruction pointers are switched.
// MXCSR and the x87 control word are neither saved nor restored (Boost's jump_fcontext does
// both, and its stmxcsr/fnstcw pair is most of what it costs): the floating-point environment
// belongs to the thread, shared by all its greenlets (see cogent/detail/switch_core.hpp).
#if defined(__x86_64__) && defined(__ELF__)

    .text

// Transfer cogent_switch_context(void* to, void* data)
// Suspends the caller (its context is the frame pushed here), resumes `to`, and returns
// {the context just suspended, data} in rax:rdx on the resumed side. A fresh context (from
// cogent_make_context) receives the same pair in rdi:rsi, as its entry function's argument.
// The resumed side is reached with `jmp`, not `ret`: a `ret` would be mispredicted by the
// return stack buffer at every switch (see cogent/detail/switch_core.hpp).
    .globl  cogent_switch_context
    .hidden cogent_switch_context
    .type   cogent_switch_context, @function
    .p2align 4
cogent_switch_context:
    .cfi_startproc
    leaq    -0x30(%rsp), %rsp
    .cfi_adjust_cfa_offset 0x30
    movq    %r12, 0x00(%rsp)
    .cfi_rel_offset %r12, 0x00
    movq    %r13, 0x08(%rsp)
    .cfi_rel_offset %r13, 0x08
    movq    %r14, 0x10(%rsp)
    .cfi_rel_offset %r14, 0x10
    movq    %r15, 0x18(%rsp)
    .cfi_rel_offset %r15, 0x18
    movq    %rbx, 0x20(%rsp)
    .cfi_rel_offset %rbx, 0x20
    movq    %rbp, 0x28(%rsp)
    .cfi_rel_offset %rbp, 0x28
    movq    %rsp, %rax
    // From here on the frame is `to`'s, with the same layout: the rules above describe the
    // context being resumed.
    movq    %rdi, %rsp
    movq    0x30(%rsp), %r8
    movq    0x00(%rsp), %r12
    movq    0x08(%rsp), %r13
    movq    0x10(%rsp), %r14
    movq    0x18(%rsp), %r15
    movq    0x20(%rsp), %rbx
    movq    0x28(%rsp), %rbp
    leaq    0x38(%rsp), %rsp
    .cfi_def_cfa_offset 0
    .cfi_register %rip, %r8
    .cfi_restore %r12
    .cfi_restore %r13
    .cfi_restore %r14
    .cfi_restore %r15
    .cfi_restore %rbx
    .cfi_restore %rbp
    movq    %rsi, %rdx
    movq    %rax, %rdi
    jmp     *%r8
    .cfi_endproc
    .size   cogent_switch_context, .-cogent_switch_context

// void* cogent_make_context(void* top, size_t size, void (*fn)(Transfer))
// A context that, when first switched to, calls fn({the context left, data}) at the top of
// the stack ending at `top` (`size` is unused: nothing is written below the frame). fn must
// never return.
    .globl  cogent_make_context
    .hidden cogent_make_context
    .type   cogent_make_context, @function
    .p2align 4
cogent_make_context:
    .cfi_startproc
    movq    %rdi, %rax
    andq    $-16, %rax
    // The frame ends at the top, so the stack pointer is 16-aligned at the call in
    // cogent_context_start, as the ABI wants, and the frame fits in the top cache line.
    leaq    -0x38(%rax), %rax
    xorl    %ecx, %ecx
    movq    %rcx, 0x00(%rax)
    movq    %rcx, 0x08(%rax)
    movq    %rcx, 0x10(%rax)
    movq    %rcx, 0x18(%rax)
    movq    %rdx, 0x20(%rax)            // rbx: the entry function
    movq    %rcx, 0x28(%rax)            // rbp: 0 ends frame-pointer chains
    leaq    cogent_context_start(%rip), %rcx
    movq    %rcx, 0x30(%rax)
    ret
    .cfi_endproc
    .size   cogent_make_context, .-cogent_make_context

// void cogent_call_on_context(void* ctx, void (*fn)(void*), void* arg)
// Calls fn(arg) on the caller's own stack, in a frame whose unwind information says that its
// caller is the suspended context `ctx` (the layout above): an unwinder started inside fn
// walks on into the suspended greenlet's frames, reading its stack and never writing to it,
// and the greenlet is not resumed. Run info and the monitor take parked greenlets' backtraces
// this way.
    .globl  cogent_call_on_context
    .hidden cogent_call_on_context
    .type   cogent_call_on_context, @function
    .p2align 4
cogent_call_on_context:
    .cfi_startproc
    pushq   %rbp                        // and the stack is 16-aligned at the call
    .cfi_adjust_cfa_offset 8
    .cfi_rel_offset %rbp, 0
    movq    %rdi, %rbp
    movq    %rdx, %rdi
    .cfi_remember_state
    // During the call: the caller is the suspended frame at rbp (= ctx), as a switch left it.
    .cfi_def_cfa %rbp, 0x38
    .cfi_offset %r12, -0x38
    .cfi_offset %r13, -0x30
    .cfi_offset %r14, -0x28
    .cfi_offset %r15, -0x20
    .cfi_offset %rbx, -0x18
    .cfi_offset %rbp, -0x10
    .cfi_offset %rip, -0x08
    call    *%rsi
    .cfi_restore_state
    popq    %rbp
    .cfi_adjust_cfa_offset -8
    .cfi_restore %rbp
    ret
    .cfi_endproc
    .size   cogent_call_on_context, .-cogent_call_on_context

// The bottom frame of every greenlet stack. Its return address is undefined in the unwind
// information, so that debuggers, profilers and the C++ unwinder stop here cleanly.
    .globl  cogent_context_start
    .hidden cogent_context_start
    .type   cogent_context_start, @function
    .p2align 4
cogent_context_start:
    .cfi_startproc
    .cfi_undefined %rip
    call    *%rbx
    ud2
    .cfi_endproc
    .size   cogent_context_start, .-cogent_context_start

#endif

    .section .note.GNU-stack, "", @progbits
