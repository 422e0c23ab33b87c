/* Stand-ins for the native entry points TensorRT's Python bindings link against
 * (nm -D --undefined-only tensorrt.so). Built three times, as libnvinfer.so.N,
 * libnvonnxparser.so.N and libnvinfer_plugin.so.N, so that the genuine binding module imports on a
 * machine without TensorRT. Every factory fails the way a real one does: it returns NULL.
 */
#include <stddef.h>

void *createInferBuilder_INTERNAL(void *logger, int version) { return NULL; }
void *createInferRuntime_INTERNAL(void *logger, int version) { return NULL; }
void *createInferRefitter_INTERNAL(void *engine, void *logger, int version) { return NULL; }
void *getPluginRegistry(void) { return NULL; }
void *getBuilderPluginRegistry(int capability) { return NULL; }
void *createNvOnnxParser_INTERNAL(void *network, void *logger, int version) { return NULL; }
void *createNvOnnxParserRefitter_INTERNAL(void *refitter, void *logger, int version) { return NULL; }
int getNvOnnxParserVersion(void) { return 0; }
int initLibNvInferPlugins(void *logger, const char *name_space) { return 0; }
