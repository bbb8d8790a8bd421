# Turns the compact KubeVirt schema (a JSON file) into a C source holding it
# as one NUL-terminated char array, so the backend needs no file at run
# time. cmake -DIN=schema.json -DOUT=file.c -DNAME=symbol -P embed.cmake
file(READ "${IN}" hex HEX)
string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," body "${hex}")
string(REGEX REPLACE "(0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,)" "\\1\n" body "${body}")
file(WRITE "${OUT}" "/* Generated from ${IN} by embed.cmake. */\nconst char ${NAME}[] = {\n${body}0x00};\n")
