# Post-link check of the firmware ELF (cmake -DNM=... -DOBJDUMP=... -DELF=... -P check_elf.cmake):
# no heap allocator, no C++ exception machinery, no global constructors.
execute_process(COMMAND ${NM} ${ELF} OUTPUT_VARIABLE symbols RESULT_VARIABLE nm_result)
if(NOT nm_result EQUAL 0)
  message(FATAL_ERROR "check_elf: ${NM} failed on ${ELF}")
endif()

set(forbidden malloc _malloc_r free _free_r calloc _calloc_r realloc _realloc_r _sbrk
    __cxa_throw __cxa_allocate_exception __gxx_personality_v0 _Unwind_Resume
    __cxa_atexit __libc_init_array)
set(found "")
foreach(name IN LISTS forbidden)
  if(symbols MATCHES "[ \n][0-9a-fA-F]* *[A-Za-z] ${name}\n")
    list(APPEND found ${name})
  endif()
endforeach()
if(found)
  message(FATAL_ERROR "check_elf: ${ELF} links ${found}: the firmware must not allocate, "
                      "throw or run constructors (see firmware/README.md)")
endif()

# Board linker scripts may lack our ASSERT, so look at the sections too.
execute_process(COMMAND ${OBJDUMP} -h ${ELF} OUTPUT_VARIABLE sections)
string(REGEX MATCHALL "\\.(preinit_array|init_array|ctors) +[0-9a-fA-F]+" ctor_sections
       "${sections}")
foreach(entry IN LISTS ctor_sections)
  string(REGEX REPLACE ".* +" "" size "${entry}")
  if(NOT size MATCHES "^0+$")
    message(FATAL_ERROR "check_elf: ${ELF} has global constructors (${entry})")
  endif()
endforeach()
