// `@bytelatent/nn/gradients`: import it before training (tf.grads, tf.variableGrads).
// `@tensorflow/tfjs-core` alone registers no gradient functions, and no build of it that Node can
// import contains them: the `@tensorflow/tfjs` umbrella bundles them into its own builds. So the
// umbrella (about 140 MB installed) is an optional peer dependency, loaded only by code that trains;
// inference (the patcher, generation, serving) runs on tfjs-core and the backends alone. The
// umbrella shares the engine and the kernel and gradient registries with tfjs-core.
import '@tensorflow/tfjs';
